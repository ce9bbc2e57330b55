package trainer

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	dpdata "github.com/strand-ml/strand/parallel/data"
)

// ZeRO-2 and ZeRO-3, with every recompute mode, on DP 2 and 4, DP x TP,
// DP x PP and hybrid sharding, follow the single-process loss curve and
// end at its parameters (the criterion: 1e-4; compare checks the
// losses at 1e-5).
func TestZeROStagesMatchSingleProcess(t *testing.T) {
	opts := testOptions()
	want, wantP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	type layout struct {
		name string
		m    mesh.Mesh
		mod  func(*Options)
	}
	layouts := []layout{
		{"dp2", mesh.Mesh{DP: 2, TP: 1, PP: 1}, nil},
		{"dp4", mesh.Mesh{DP: 4, TP: 1, PP: 1}, nil},
		{"dp2 tp2", mesh.Mesh{DP: 2, TP: 2, PP: 1}, nil},
		{"dp2 pp2 gpipe", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) { o.Schedule = "gpipe" }},
		{"dp4 hybrid 2", mesh.Mesh{DP: 4, TP: 1, PP: 1}, func(o *Options) { o.ShardGroup = 2 }},
	}
	recomputes := []string{model.RecomputeNone, model.RecomputeSelective, model.RecomputeFull}
	if testing.Short() {
		recomputes = recomputes[:1]
	}
	for _, stage := range []int{2, 3} {
		for i, l := range layouts {
			for j, rc := range recomputes {
				// every layout with no recompute; every recompute mode on
				// one layout per stage (the cross product adds nothing the
				// model's bit-identity tests do not cover)
				if j > 0 && i != stage-1 {
					continue
				}
				name := fmt.Sprintf("zero%d %s recompute %s", stage, l.name, rc)
				o := opts
				o.Zero, o.Recompute = stage, rc
				if stage == 3 {
					// blocks in quarters (these blocks are below the
					// default unit size: ZeRO-2 moves them whole)
					o.ZeroMinUnit = 1
					name += " quarters"
				}
				if l.mod != nil {
					l.mod(&o)
				}
				got, gotP := runMesh(t, o, l.m)
				compare(t, name, got, want, gotP, wantP)
			}
		}
	}
}

// With the same arithmetic order the stages agree bit for bit: on two
// data-parallel ranks a reduce-scatter's sums are the all-reduce's (one
// addition, commutative), so ZeRO-2, ZeRO-3 (with and without resharding
// after forward) and DDP give identical losses and parameters. Without
// clipping (a sharded gradient norm adds its squares in another order)
// and with one micro-batch (ZeRO-2/3 reduce each micro-batch's gradient
// as its backward ends and add the reduced pieces; DDP adds the
// micro-batches first).
func TestZeROStagesBitIdenticalOnTwoRanks(t *testing.T) {
	opts := testOptions()
	opts.GradClip, opts.Micro = 0, 1
	m := mesh.Mesh{DP: 2, TP: 1, PP: 1}
	want, wantP := runMesh(t, opts, m)
	for _, c := range []struct {
		name string
		mod  func(*Options)
	}{
		{"zero1", func(o *Options) { o.DP = dpdata.Options{ZeRO1: true} }},
		{"zero2", func(o *Options) { o.Zero = 2 }},
		{"zero3", func(o *Options) { o.Zero = 3 }},
		{"zero3 quarters", func(o *Options) { o.Zero, o.ZeroMinUnit = 3, 1 }},
		{"zero3 keep gathered", func(o *Options) { o.Zero, o.KeepGathered = 3, true }},
		{"zero3 bf16", func(o *Options) { o.Zero, o.Precision = 3, "bf16" }},
		{"zero3 bf16 quarters", func(o *Options) { o.Zero, o.Precision, o.ZeroMinUnit = 3, "bf16", 1 }},
	} {
		o := opts
		c.mod(&o)
		if o.Precision == "bf16" {
			ref := opts
			ref.Precision = "bf16"
			ref.Zero = 0
			want, wantP = runMesh(t, ref, m)
		}
		got, gotP := runMesh(t, o, m)
		sameBits(t, c.name, got, want, gotP, wantP)
	}
}

// fp16 with loss scaling and a tied embedding split over two stages keep
// the single-process curve under ZeRO-3.
func TestZeRO3FP16TiedPipeline(t *testing.T) {
	opts := testOptions()
	opts.Precision = "fp16"
	want, wantP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	o := opts
	o.Zero = 3
	got, gotP := runMesh(t, o, mesh.Mesh{DP: 2, TP: 1, PP: 2})
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
			t.Errorf("step %d: loss %.7f, single process %.7f", i+1, got[i], want[i])
		}
	}
	compare(t, "zero3 fp16 dp2 pp2", got, want, gotP, wantP)
}

func TestZeROOptionsRefused(t *testing.T) {
	base := testOptions()
	m := mesh.Mesh{DP: 4, TP: 1, PP: 1}
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"stage 4", func(o *Options) { o.Zero = 4 }, "not one of 0, 1, 2, 3"},
		{"shard group 3 of 4", func(o *Options) { o.Zero, o.ShardGroup = 3, 3 }, "does not divide the 4 data-parallel ranks"},
		{"shard group without zero 2/3", func(o *Options) { o.ShardGroup = 2 }, "needs --zero 2 or 3"},
		{"keep gathered with zero 2", func(o *Options) { o.Zero, o.KeepGathered = 2, true }, "needs --zero 3"},
		{"zero1 and zero 3", func(o *Options) { o.Zero, o.DP.ZeRO1 = 3, true }, "choose one --zero"},
		{"bf16 gradients", func(o *Options) { o.Zero, o.DP.BF16 = 2, true }, "gradient compression"},
		{"zero bubble", func(o *Options) { o.Zero, o.Schedule = 3, "zb-h1" }, "defers weight gradients"},
		{"min unit without zero 2/3", func(o *Options) { o.ZeroMinUnit = 10 }, "--zero-min-unit 10 needs --zero 2 or 3"},
	} {
		o := base
		c.mod(&o)
		err := o.Validate(m)
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// LoRA under ZeRO-2 and ZeRO-3: the frozen base is sharded (ZeRO-3) and
// gathered unit by unit, the adapters' gradients and moments are sharded;
// the run matches replicated LoRA training bit for bit on two ranks and
// within 1e-5 on four.
func TestZeROWithLoRA(t *testing.T) {
	opts := testOptions()
	opts.GradClip, opts.Micro = 0, 1
	opts.Adapt = func(m *model.GPT) error {
		return m.EnableLoRA(model.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "mlp.c_proj"}}, 1)
	}
	for _, m := range []mesh.Mesh{{DP: 2, TP: 1, PP: 1}, {DP: 2, TP: 2, PP: 1}, {DP: 4, TP: 1, PP: 1}} {
		want, wantP := runMesh(t, opts, m)
		for _, stage := range []int{2, 3} {
			o := opts
			o.Zero = stage
			o.ZeroMinUnit = stage - 2 // ZeRO-3 in quarters: adapters follow their parts
			got, gotP := runMesh(t, o, m)
			name := fmt.Sprintf("lora zero%d %v", stage, m)
			if m.DP == 2 {
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("%s step %d: loss %v, replicated %v", name, i+1, got[i], want[i])
					}
				}
				continue
			}
			compare(t, name, got, want, gotP, wantP)
		}
	}
}

// A vocabulary large enough to be cut into chunks (1600 rows: five wte
// units, three per TP rank at TP 2): on two ranks ZeRO-2/3 still give
// DDP's bits (chunks cut at the GEMM's k blocks, the tied rows reduced
// once), and every layout follows the single-process curve, including
// the tied copy's chunks summed across two stages.
func TestZeROVocabChunks(t *testing.T) {
	opts := testOptions()
	opts.Model.VocabSize = 1600
	opts.GradClip, opts.Micro = 0, 1
	two := mesh.Mesh{DP: 2, TP: 1, PP: 1}
	// 64 positions a rank: the embedding's gradient rows are all-gathered;
	// 256: they outweigh a chunk and are reduced chunk by chunk, densely
	for _, batch := range []int{8, 32} {
		opts.Batch = batch
		ddp, ddpP := runMesh(t, opts, two)
		for _, stage := range []int{2, 3} {
			o := opts
			o.Zero = stage
			got, gotP := runMesh(t, o, two)
			sameBits(t, fmt.Sprintf("batch %d zero%d", batch, stage), got, ddp, gotP, ddpP)
		}
	}
	opts = testOptions()
	opts.Model.VocabSize = 1600
	want, wantP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	for _, l := range []struct {
		name string
		m    mesh.Mesh
		mod  func(*Options)
	}{
		{"dp2 tp2", mesh.Mesh{DP: 2, TP: 2, PP: 1}, nil},
		{"dp2 pp2 gpipe", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) { o.Schedule = "gpipe" }},
		{"dp4 hybrid 2", mesh.Mesh{DP: 4, TP: 1, PP: 1}, func(o *Options) { o.ShardGroup = 2 }},
		// the rows outweigh a chunk: dense, all-reduced over the replicas
		{"dp4 hybrid 2 batch 32", mesh.Mesh{DP: 4, TP: 1, PP: 1}, func(o *Options) { o.ShardGroup = 2 }},
	} {
		o := opts
		o.Zero = 3
		if l.mod != nil {
			l.mod(&o)
		}
		w, wP := want, wantP
		if strings.HasSuffix(l.name, "batch 32") {
			ref := opts
			ref.Batch, o.Batch = 32, 32
			w, wP = runMesh(t, ref, mesh.Mesh{DP: 1, TP: 1, PP: 1})
		}
		got, gotP := runMesh(t, o, l.m)
		compare(t, "zero3 vocab chunks "+l.name, got, w, gotP, wP)
	}
}

// sameBits checks a run's losses and final parameters equal DDP's bit for
// bit.
func sameBits(t *testing.T, name string, got, want []float64, gotP, wantP map[string][]float32) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s step %d: loss %v, DDP %v", name, i+1, got[i], want[i])
		}
	}
	for n, w := range wantP {
		for i := range w {
			if gotP[n][i] != w[i] {
				t.Errorf("%s: %s[%d] = %v, DDP %v", name, n, i, gotP[n][i], w[i])
				break
			}
		}
	}
}
