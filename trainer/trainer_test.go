package trainer

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	dpdata "github.com/strand-ml/strand/parallel/data"
	"github.com/strand-ml/strand/transport"
)

// These tests run every rank of a mesh as goroutines over the in-process
// loopback transport, so the trainer's communication (buckets, pipeline
// sends, tied embedding, norms, ZeRO-1) runs under the race detector.

func testOptions() Options {
	cfg := model.Config{VocabSize: 64, NLayer: 4, NHead: 4, NEmbd: 32, NPositions: 16, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.02}
	return Options{Model: cfg, Batch: 8, Seq: 16, Micro: 2, Steps: 4, LR: 3e-3, Warmup: 1, MinLRFrac: 0.1,
		GradClip: 1, AdamW: optim.DefaultAdamW(), Seed: 9, Threads: 1}
}

func testTokens() []uint16 {
	toks := make([]uint16, 4096)
	for i := range toks {
		toks[i] = uint16((i*i*7 + i*13 + 5) % 64)
	}
	return toks
}

// runMesh trains opts on mesh m and returns rank 0's per-step losses and
// the parameters of the dp=0, tp=0 rank of every stage by name.
func runMesh(t *testing.T, opts Options, m mesh.Mesh) ([]float64, map[string][]float32) {
	t.Helper()
	var mu sync.Mutex
	var losses []float64
	params := map[string][]float32{}
	onMesh(t, m, func(r int, c *Comms, _ Barrier) error {
		tr, err := testTrainer(opts, m, c)
		if err != nil {
			return err
		}
		defer tr.Close()
		for tr.Step < opts.Steps {
			st, err := tr.TrainStep(context.Background())
			if err != nil {
				return err
			}
			if r == 0 {
				mu.Lock()
				losses = append(losses, st.Loss)
				mu.Unlock()
			}
		}
		if err := tr.MaterializeParams(context.Background()); err != nil {
			return err
		}
		if c.Coord.DP == 0 {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range tr.Model.Params.List {
				if p.TiedCopy {
					continue
				}
				if params[p.Name] == nil {
					params[p.Name] = make([]float32, model.Numel(p.Shape))
				}
				p.Shard.Insert(params[p.Name], p.Data, p.Shape, c.Coord.TP, m.TP)
			}
		}
		return nil
	})
	return losses, params
}

// testComms builds rank r's communicators of mesh m over tr.
func testComms(tr transport.Transport, m mesh.Mesh, r int) (*Comms, error) {
	coord := m.Coord(r)
	comm := func(name string, a mesh.Axis) (*collective.Comm, error) {
		return collective.New(tr, m.Group(a, r), collective.Options{Name: name})
	}
	c := &Comms{Mesh: m, Coord: coord}
	var err error
	if c.DP, err = comm("dp", mesh.DataAxis); err != nil {
		return nil, err
	}
	if c.TP, err = comm("tp", mesh.TensorAxis); err != nil {
		return nil, err
	}
	if c.PP, err = comm("pp", mesh.PipelineAxis); err != nil {
		return nil, err
	}
	if m.PP > 1 && (coord.PP == 0 || coord.PP == m.PP-1) {
		first, last := coord, coord
		first.PP, last.PP = 0, m.PP-1
		if c.Embed, err = collective.New(tr, []int{m.Rank(first), m.Rank(last)}, collective.Options{Name: "embed"}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func compare(t *testing.T, name string, got, want []float64, gotP, wantP map[string][]float32) {
	t.Helper()
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-5 {
			t.Errorf("%s step %d: loss %.7f, single process %.7f", name, i+1, got[i], want[i])
		}
	}
	// All parameters together, as the layout-invariance criterion states
	// it: Adam amplifies rounding in tiny gradients (zero-initialized
	// biases), so single small tensors may differ by more.
	var num, den float64
	for n, w := range wantP {
		g := gotP[n]
		if len(g) != len(w) {
			t.Fatalf("%s: parameter %s has %d elements, want %d", name, n, len(g), len(w))
		}
		for i := range w {
			d := float64(g[i] - w[i])
			num, den = num+d*d, den+float64(w[i])*float64(w[i])
		}
	}
	if e := math.Sqrt(num / den); e > 1e-4 {
		t.Errorf("%s: final parameters differ by relative L2 %.2g", name, e)
	} else {
		t.Logf("%s: final parameters within relative L2 %.2g", name, e)
	}
}

func TestMeshesMatchSingleProcess(t *testing.T) {
	opts := testOptions()
	want, wantP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	for _, c := range []struct {
		name string
		m    mesh.Mesh
		mod  func(*Options)
	}{
		{"dp2", mesh.Mesh{DP: 2, TP: 1, PP: 1}, nil},
		{"tp2", mesh.Mesh{DP: 1, TP: 2, PP: 1}, nil},
		{"pp2 gpipe", mesh.Mesh{DP: 1, TP: 1, PP: 2}, func(o *Options) { o.Schedule = "gpipe" }},
		{"dp2 tp2 pp2 1f1b", mesh.Mesh{DP: 2, TP: 2, PP: 2}, nil},
		{"dp2 pp2 zero1 small buckets", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) {
			o.DP = dpdata.Options{ZeRO1: true, BucketBytes: 4096}
		}},
	} {
		o := opts
		if c.mod != nil {
			c.mod(&o)
		}
		got, gotP := runMesh(t, o, c.m)
		compare(t, c.name, got, want, gotP, wantP)
	}
}

func TestBF16GradientsStayClose(t *testing.T) {
	opts := testOptions()
	want, _ := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	opts.DP = dpdata.Options{BF16: true, BucketBytes: 8192}
	got, _ := runMesh(t, opts, mesh.Mesh{DP: 2, TP: 1, PP: 1})
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-2 {
			t.Errorf("bf16 gradients, step %d: loss %.5f vs %.5f", i+1, got[i], want[i])
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	opts := testOptions()
	if err := opts.Validate(mesh.Mesh{DP: 3, TP: 1, PP: 1}); err == nil {
		t.Fatal("batch 8 over 3 data-parallel ranks accepted")
	}
	if err := opts.Validate(mesh.Mesh{DP: 1, TP: 1, PP: 5}); err == nil {
		t.Fatal("5 stages for 4 layers accepted")
	}
	if err := opts.Validate(mesh.Mesh{DP: 1, TP: 3, PP: 1}); err == nil {
		t.Fatal("tp 3 with 4 heads accepted")
	}
}

// TestSaveAsyncWritesTheSnapshot: training goes on while the checkpoint is
// written, and the checkpoint holds the state of the step it was taken at.
func TestSaveAsyncWritesTheSnapshot(t *testing.T) {
	opts := testOptions()
	loader, _ := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
	tr, err := New(opts, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := tr.TrainStep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := append([]float32(nil), tr.Model.Params.Data...)
	run := t.TempDir()
	wait := tr.SaveAsync(ctx, run, 0, 0, nil, State{Seed: 9})
	for i := 0; i < 2; i++ {
		if _, err := tr.TrainStep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	path, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(opts, loader, nil)
	defer other.Close()
	st, err := other.Restore(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Step != 2 || other.Step != 2 {
		t.Fatalf("restored step %d", st.Step)
	}
	for i := range want {
		if other.Model.Params.Data[i] != want[i] {
			t.Fatalf("parameter %d: checkpoint %g, state at the save %g", i, other.Model.Params.Data[i], want[i])
		}
	}
}

// testTrainer is a trainer for rank c of mesh m on testTokens (its
// data-parallel share of each batch).
func testTrainer(opts Options, m mesh.Mesh, c *Comms) (*Trainer, error) {
	loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.RowsPerRank(m), Seq: opts.Seq, DPRank: c.Coord.DP, DPSize: m.DP})
	if err != nil {
		return nil, err
	}
	return New(opts, loader, c)
}
