package trainer

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/mesh"
	dpdata "github.com/strand-ml/strand/parallel/data"
)

func interleavedOptions(micro, dp int) Options {
	o := testOptions()
	o.Model.NLayer = 8 // pp4 x 2 virtual stages: one layer per chunk
	o.Micro, o.Batch = micro, 2*micro*dp
	return o
}

// TestInterleavedMatchesSingleProcess: interleaved 1F1B with two model
// chunks per stage (virtual stages) gives the single process's losses and
// parameters on pp2 and pp4 with several micro-batch counts, with DP, TP,
// ZeRO-1 and bf16 on the other axes.
func TestInterleavedMatchesSingleProcess(t *testing.T) {
	for _, c := range []struct {
		name  string
		m     mesh.Mesh
		micro int
		mod   func(*Options)
	}{
		{"pp2 m2", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 2, nil},
		{"pp2 m4", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 4, nil},
		{"pp2 m6", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 6, nil},
		{"pp4 m4", mesh.Mesh{DP: 1, TP: 1, PP: 4}, 4, nil},
		{"pp4 m8", mesh.Mesh{DP: 1, TP: 1, PP: 4}, 8, nil},
		{"dp2 pp2 m4", mesh.Mesh{DP: 2, TP: 1, PP: 2}, 4, func(o *Options) { o.DP = dpdata.Options{BucketBytes: 4096} }},
		{"tp2 pp2 m4", mesh.Mesh{DP: 1, TP: 2, PP: 2}, 4, nil},
		{"dp2 pp2 zero1 m2", mesh.Mesh{DP: 2, TP: 1, PP: 2}, 2, func(o *Options) { o.DP = dpdata.Options{ZeRO1: true, BucketBytes: 4096} }},
		{"pp2 bf16 m4", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 4, func(o *Options) { o.Precision = "bf16" }},
		{"pp2 selective recompute m4", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 4, func(o *Options) { o.Recompute = "selective" }},
	} {
		opts := interleavedOptions(c.micro, c.m.DP)
		if c.mod != nil {
			c.mod(&opts)
		}
		want, wantP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
		o := opts
		o.Schedule, o.VirtualStages = "interleaved", 2
		got, gotP := runMesh(t, o, c.m)
		compare(t, "interleaved V=2 "+c.name, got, want, gotP, wantP)
	}
	// three chunks per stage of unequal sizes (8 layers in 6 chunks: 2, 2,
	// 1, 1, 1, 1)
	opts := interleavedOptions(4, 1)
	want, wantP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	opts.Schedule, opts.VirtualStages = "interleaved", 3
	got, gotP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 2})
	compare(t, "interleaved V=3 pp2 m4", got, want, gotP, wantP)
}

// TestInterleavedBitIdenticalTo1F1B: without gradient clipping (whose norm
// sums squares per stage, so its rounding depends on which blocks a stage
// holds) every gradient is accumulated in 1F1B's order, micro-batch by
// micro-batch: losses and parameters equal 1F1B's bit for bit.
func TestInterleavedBitIdenticalTo1F1B(t *testing.T) {
	for _, c := range []struct {
		name  string
		m     mesh.Mesh
		micro int
	}{
		{"pp2 m4", mesh.Mesh{DP: 1, TP: 1, PP: 2}, 4},
		{"dp2 tp2 pp2 m2", mesh.Mesh{DP: 2, TP: 2, PP: 2}, 2},
	} {
		opts := interleavedOptions(c.micro, c.m.DP)
		opts.GradClip = 0
		want, wantP := runMesh(t, opts, c.m)
		o := opts
		o.Schedule, o.VirtualStages = "interleaved", 2
		got, gotP := runMesh(t, o, c.m)
		for i := range want {
			if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
				t.Errorf("%s step %d: loss %v, 1F1B %v", c.name, i+1, got[i], want[i])
			}
		}
		for name, w := range wantP {
			for i := range w {
				if math.Float32bits(gotP[name][i]) != math.Float32bits(w[i]) {
					t.Errorf("%s: parameter %s[%d] is %v, 1F1B %v", c.name, name, i, gotP[name][i], w[i])
					break
				}
			}
		}
	}
}

// What virtual stages cannot run with is refused, naming it.
func TestInterleavedRefusals(t *testing.T) {
	m := mesh.Mesh{DP: 2, TP: 1, PP: 2}
	for _, c := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Micro, o.Batch = 3, 12 }, "multiple of the stages"},
		{func(o *Options) { o.Schedule = "1f1b" }, "virtual stages need --schedule interleaved"},
		{func(o *Options) { o.Zero = 2 }, "ZeRO-2/3"},
		{func(o *Options) { o.StageLayers = []int{4, 4} }, "--stage-layers"},
		{func(o *Options) { o.Model.NLayer = 3 }, "every chunk needs at least one layer"},
		{func(o *Options) { o.VirtualStages = -1 }, "virtual stages"},
	} {
		o := interleavedOptions(4, m.DP)
		o.Schedule, o.VirtualStages = "interleaved", 2
		c.mod(&o)
		err := o.Validate(m)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one naming %q", err, c.want)
		}
	}
}

// A checkpoint written under virtual stages names layers by their global
// index: it resumes on its own layout as if uninterrupted and loads into
// other (pp, virtual stages) layouts with the same validation loss.
func TestInterleavedCheckpointReshards(t *testing.T) {
	opts := interleavedOptions(4, 1)
	opts.Schedule, opts.VirtualStages = "interleaved", 2
	pp2 := mesh.Mesh{DP: 1, TP: 1, PP: 2}
	run := t.TempDir()
	full, val := zeroRun(t, opts, pp2, "", run, 2)
	ckpt := filepath.Join(run, "checkpoints", "step_000002")
	resumed, rval := zeroRun(t, opts, pp2, ckpt, "", 0)
	for i, l := range resumed {
		if l != full[2+i] {
			t.Errorf("resumed step %d: loss %v, uninterrupted %v", 3+i, l, full[2+i])
		}
	}
	if rval != val {
		t.Errorf("resumed validation loss %v, uninterrupted %v", rval, val)
	}
	_, want := zeroRun(t, withSteps(opts, 2), pp2, ckpt, "", 0)
	for _, o := range []struct {
		name    string
		m       mesh.Mesh
		virtual int
	}{{"one process", mesh.Mesh{DP: 1, TP: 1, PP: 1}, 1}, {"pp2", pp2, 1}, {"pp4", mesh.Mesh{DP: 1, TP: 1, PP: 4}, 1}, {"pp4 V=2", mesh.Mesh{DP: 1, TP: 1, PP: 4}, 2}} {
		oo := withSteps(opts, 2)
		oo.VirtualStages = o.virtual
		if o.virtual == 1 {
			oo.Schedule = "1f1b"
		}
		_, v := zeroRun(t, oo, o.m, ckpt, "", 0)
		if math.Abs(v-want)/want > 1e-6 {
			t.Errorf("%s: validation loss %v after loading the pp2 V=2 checkpoint, %v on its own layout", o.name, v, want)
		}
	}
}

// The measured bubble is the idle share of the steps' makespans: every
// stage reports the same figures, between 0 and 1 on a pipeline, the
// waits inside the compute windows no more than all idle time.
func TestMeasuredBubbleOverMakespan(t *testing.T) {
	m := mesh.Mesh{DP: 1, TP: 1, PP: 2}
	opts := interleavedOptions(4, 1)
	opts.Steps = 2
	var mu sync.Mutex
	got := map[int]Bubble{}
	onMesh(t, m, func(r int, c *Comms, _ Barrier) error {
		tr, err := testTrainer(opts, m, c)
		if err != nil {
			return err
		}
		defer tr.Close()
		for tr.Step < opts.Steps {
			if _, err := tr.TrainStep(context.Background()); err != nil {
				return err
			}
		}
		if n := len(tr.pipeSteps); n != opts.Steps {
			return fmt.Errorf("%d step makespans recorded for %d steps", n, opts.Steps)
		}
		b, err := tr.MeasuredBubble(context.Background())
		mu.Lock()
		got[r] = b
		mu.Unlock()
		return err
	})
	if b := got[0]; got[0] != got[1] || b.Makespan <= 0 || b.Makespan >= 1 || b.Window < 0 || b.Window > b.Makespan {
		t.Errorf("measured bubble %+v on the two stages", got)
	}
}
