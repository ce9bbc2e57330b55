package trainer

import (
	"math"
	"testing"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	dpdata "github.com/strand-ml/strand/parallel/data"
)

// TestZeroBubbleSchedulesMatch1F1B: zb-h1 and zb-h2 (the backward split
// into input and weight gradients, W deferred) give 1F1B's per-step
// losses and final parameters bit for bit on pp2 and pp4, with DP, TP and
// ZeRO-1 on the other axes and several micro-batch counts.
func TestZeroBubbleSchedulesMatch1F1B(t *testing.T) {
	for _, c := range []struct {
		name  string
		m     mesh.Mesh
		micro int
		mod   func(*Options)
	}{
		{"pp2 m2", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 2, nil},
		{"pp2 m4", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 4, nil},
		{"pp4 m8", mesh.Mesh{DP: 1, TP: 1, PP: 4}, 8, nil},
		{"dp2 tp2 pp2 m4", mesh.Mesh{DP: 2, TP: 2, PP: 2}, 4, nil},
		{"dp2 pp2 zero1 m2", mesh.Mesh{DP: 2, TP: 1, PP: 2}, 2, func(o *Options) { o.DP = dpdata.Options{ZeRO1: true, BucketBytes: 4096} }},
	} {
		opts := testOptions()
		opts.Micro = c.micro
		opts.Batch = 2 * c.micro * c.m.DP
		if c.mod != nil {
			c.mod(&opts)
		}
		opts.Schedule = "1f1b"
		want, wantP := runMesh(t, opts, c.m)
		for _, s := range []string{"zb-h1", "zb-h2"} {
			o := opts
			o.Schedule = s
			got, gotP := runMesh(t, o, c.m)
			for i := range want {
				if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
					t.Errorf("%s %s step %d: loss %v, 1F1B %v", c.name, s, i+1, got[i], want[i])
				}
			}
			for name, w := range wantP {
				for i := range w {
					if math.Float32bits(gotP[name][i]) != math.Float32bits(w[i]) {
						t.Errorf("%s %s: parameter %s[%d] is %v, 1F1B %v", c.name, s, name, i, gotP[name][i], w[i])
						break
					}
				}
			}
		}
	}
	o := testOptions()
	o.Schedule, o.Recompute = "zb-h1", model.RecomputeFull
	if err := o.Validate(mesh.Mesh{DP: 1, TP: 1, PP: 2}); err == nil {
		t.Error("zb-h1 with full recomputation accepted")
	}
}
