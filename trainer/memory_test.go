package trainer

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/memplan"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/metrics"
	"github.com/strand-ml/strand/model"
)

// TestMemoryMatchesPlan builds every rank's trainer on several meshes and
// checks that the buffers it really holds (Trainer.Memory) are, category
// by category, what memplan predicts for its pipeline stage.
func TestMemoryMatchesPlan(t *testing.T) {
	cases := []struct {
		name string
		mesh mesh.Mesh
		set  func(*Options)
		plan func(*memplan.Config)
	}{
		{"dp2 zero1 bf16 grads, bf16", mesh.Mesh{DP: 2, TP: 1, PP: 1},
			func(o *Options) { o.DP.ZeRO1, o.DP.BF16, o.DP.BucketBytes, o.Precision = true, true, 10000, "bf16" },
			func(c *memplan.Config) { c.Zero, c.GradCompress, c.BucketBytes, c.Precision = 1, "bf16", 10000, "bf16" }},
		{"tp2 pp2 1f1b recompute full, fp16", mesh.Mesh{DP: 1, TP: 2, PP: 2},
			func(o *Options) { o.Micro, o.Recompute, o.Precision = 4, model.RecomputeFull, "fp16" },
			func(c *memplan.Config) { c.Micro, c.Recompute, c.Precision = 4, model.RecomputeFull, "fp16" }},
		{"pp2 zb-h1 (split backward)", mesh.Mesh{DP: 1, TP: 1, PP: 2},
			func(o *Options) { o.Micro, o.Schedule = 4, "zb-h1" },
			func(c *memplan.Config) { c.Micro, c.Schedule = 4, "zb-h1" }},
		{"dp2 pp2 gpipe selective, fp8 grads", mesh.Mesh{DP: 2, TP: 1, PP: 2},
			func(o *Options) { o.Schedule, o.Recompute, o.DP.FP8 = "gpipe", model.RecomputeSelective, "fp8" },
			func(c *memplan.Config) {
				c.Schedule, c.Recompute, c.GradCompress = "gpipe", model.RecomputeSelective, "fp8"
			}},
		{"dp2 zero2", mesh.Mesh{DP: 2, TP: 1, PP: 1},
			func(o *Options) { o.Zero = 2 },
			func(c *memplan.Config) { c.Zero = 2 }},
		{"dp2 zero3 bf16", mesh.Mesh{DP: 2, TP: 1, PP: 1},
			func(o *Options) { o.Zero, o.Precision = 3, "bf16" },
			func(c *memplan.Config) { c.Zero, c.Precision, c.ReshardAfterForward = 3, "bf16", true }},
		{"dp4 zero3 shard group 2, kept gathered", mesh.Mesh{DP: 4, TP: 1, PP: 1},
			func(o *Options) { o.Zero, o.ShardGroup, o.KeepGathered = 3, 2, true },
			func(c *memplan.Config) { c.Zero, c.ShardGroup = 3, 2 }},
		{"dp2 pp2 zero3 gpipe", mesh.Mesh{DP: 2, TP: 1, PP: 2},
			func(o *Options) { o.Zero, o.Schedule = 3, "gpipe" },
			func(c *memplan.Config) { c.Zero, c.Schedule, c.ReshardAfterForward = 3, "gpipe", true }},
	}
	for _, c := range cases {
		opts := testOptions()
		opts.Micro = 2
		c.set(&opts)
		pc := memplan.Config{Model: opts.Model, Mesh: c.mesh, Batch: opts.Batch, Micro: 2, Seq: opts.Seq, Threads: 1}
		c.plan(&pc)
		stages, err := memplan.Plan(pc)
		if err != nil {
			t.Fatal(err)
		}
		world := c.mesh.World()
		got := make([]memplan.Breakdown, world)
		onMesh(t, c.mesh, func(r int, comms *Comms, _ Barrier) error {
			var err error
			got[r], err = stepAndMeasure(opts, c.mesh, comms, r)
			return err
		})
		for r := 0; r < world; r++ {
			coord := c.mesh.Coord(r)
			gc, wc := got[r].Categories(), stages[coord.PP].Categories()
			for i := range gc[:5] { // Other is the process around the buffers: not measured here
				if gc[i].Bytes != wc[i].Bytes {
					t.Errorf("%s rank %d (stage %d, dp %d): %s holds %d bytes, planned %d", c.name, r, coord.PP, coord.DP, gc[i].Name, gc[i].Bytes, wc[i].Bytes)
				}
			}
		}
	}
}

// stepAndMeasure builds rank r's trainer, takes one step (buffers some
// schedules allocate on first use exist then) and returns its Memory.
func stepAndMeasure(opts Options, m mesh.Mesh, comms *Comms, r int) (memplan.Breakdown, error) {
	coord := m.Coord(r)
	loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.RowsPerRank(m), Seq: opts.Seq, DPRank: coord.DP, DPSize: m.DP})
	if err != nil {
		return memplan.Breakdown{}, err
	}
	t, err := New(opts, loader, comms)
	if err != nil {
		return memplan.Breakdown{}, err
	}
	defer t.Close()
	if _, err := t.TrainStep(context.Background()); err != nil {
		return memplan.Breakdown{}, err
	}
	return t.Memory(), nil
}

// TestRunRecordsMemory checks the run loop writes the memory categories
// and the peak RSS on the first step's record and in the summary.
func TestRunRecordsMemory(t *testing.T) {
	opts := testOptions()
	opts.Steps = 2
	opts.Recompute = model.RecomputeFull // its shared buffers once counted twice after a step
	loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(opts, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	want := tr.Memory() // before any step
	dir := t.TempDir()
	sum, err := Run(context.Background(), &Steps{T: tr}, RunConfig{Name: "train", Out: dir, Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Memory(); got != want {
		t.Errorf("the trainer holds %+v after training, %+v before", got, want)
	}
	if sum.Memory.Params != want.Params || sum.Memory.Activations != want.Activations || sum.Memory.Total != want.Total {
		t.Errorf("summary memory %+v, the trainer holds %+v", sum.Memory, want)
	}
	if sum.PeakRSS < want.Total {
		t.Errorf("peak RSS %d is below the %d bytes of buffers the run touched", sum.PeakRSS, want.Total)
	}
	recs, err := metrics.ReadJSONL(filepath.Join(dir, "metrics.jsonl"))
	if err != nil || len(recs) < 2 {
		t.Fatalf("metrics.jsonl: %d records, %v", len(recs), err)
	}
	first, last := recs[1], recs[len(recs)-1]
	for _, r := range []map[string]any{first, last} {
		if r["mem_params"] != float64(want.Params) || r["mem_optimizer"] != float64(want.Optimizer) || r["peak_rss"] == nil {
			t.Errorf("record %v lacks the memory (want mem_params %d, mem_optimizer %d, peak_rss)", r, want.Params, want.Optimizer)
		}
	}
	if first["step"] != 2.0 || last["event"] != "summary" {
		t.Errorf("memory on records %v and %v, want step 2 and the summary", first, last)
	}
}
