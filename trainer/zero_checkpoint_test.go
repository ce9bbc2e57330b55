package trainer

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/transport/loopback"
)

// onMesh runs f on every rank of m (goroutines over loopback), with a
// barrier over the whole mesh, and fails the test on any rank's error.
func onMesh(t *testing.T, m mesh.Mesh, f func(r int, c *Comms, barrier Barrier) error) {
	t.Helper()
	world := m.World()
	trs := loopback.New(world)
	all := make([]int, world)
	for i := range all {
		all[i] = i
	}
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r := 0; r < world; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := testComms(trs[r], m, r)
			if err != nil {
				errs[r] = err
				return
			}
			w, err := collective.New(trs[r], all, collective.Options{Name: "world"})
			if err != nil {
				errs[r] = err
				return
			}
			barrier := func(ctx context.Context) error { return w.Barrier(ctx) }
			errs[r] = f(r, c, barrier)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// zeroRun trains opts on m from checkpoint dir (or from scratch), saves
// after save steps when run is not "", and returns the losses of the
// steps it took and the final validation loss.
func zeroRun(t *testing.T, opts Options, m mesh.Mesh, from, run string, save int) (losses []float64, val float64) {
	t.Helper()
	var mu sync.Mutex
	onMesh(t, m, func(r int, c *Comms, barrier Barrier) error {
		ctx := context.Background()
		tr, err := testTrainer(opts, m, c)
		if err != nil {
			return err
		}
		defer tr.Close()
		if from != "" {
			if _, err := tr.Restore(from); err != nil {
				return err
			}
		}
		for tr.Step < opts.Steps {
			st, err := tr.TrainStep(ctx)
			if err != nil {
				return err
			}
			if r == 0 {
				mu.Lock()
				losses = append(losses, st.Loss)
				mu.Unlock()
			}
			if run != "" && tr.Step == save {
				if _, err := tr.Save(ctx, run, 0, r, barrier, State{Seed: opts.Seed}); err != nil {
					return err
				}
			}
		}
		vl, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.RowsPerRank(m), Seq: opts.Seq, DPRank: c.Coord.DP, DPSize: m.DP})
		if err != nil {
			return err
		}
		v, err := tr.EvalLoss(ctx, vl, 2)
		if err != nil {
			return err
		}
		if r == 0 {
			val = v
		}
		return nil
	})
	return losses, val
}

// A ZeRO-3 checkpoint is written piece by piece by every rank of the shard
// group; resuming from it on the same layout repeats the uninterrupted
// run's losses bit for bit, and it loads into other layouts and stages
// (one process, ZeRO-1, ZeRO-2 on another mesh) with the same evaluation.
func TestZeRO3CheckpointResumeAndReshard(t *testing.T) {
	for _, c := range []struct {
		name string
		m    mesh.Mesh
		mod  func(*Options)
	}{
		{"dp2", mesh.Mesh{DP: 2, TP: 1, PP: 1}, nil},
		{"dp2 pp2 tied", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) { o.Schedule = "gpipe" }},
		{"dp4 hybrid 2 bf16", mesh.Mesh{DP: 4, TP: 1, PP: 1}, func(o *Options) { o.ShardGroup, o.Precision = 2, "bf16" }},
		{"dp4 hybrid 2", mesh.Mesh{DP: 4, TP: 1, PP: 1}, func(o *Options) { o.ShardGroup = 2 }},
		{"dp2 bf16", mesh.Mesh{DP: 2, TP: 1, PP: 1}, func(o *Options) { o.Precision = "bf16" }},
		{"dp2 tp2 zero2", mesh.Mesh{DP: 2, TP: 2, PP: 1}, func(o *Options) { o.Zero = 2 }},
		// wte in five chunks: a rank owns a piece of each (NAME@K pieces)
		{"dp2 vocab chunks", mesh.Mesh{DP: 2, TP: 1, PP: 1}, func(o *Options) { o.Model.VocabSize = 1600 }},
		{"dp2 pp2 tied vocab chunks", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) { o.Model.VocabSize, o.Schedule = 1600, "gpipe" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := testOptions()
			opts.Zero = 3
			if c.mod != nil {
				c.mod(&opts)
			}
			run := t.TempDir()
			full, val := zeroRun(t, opts, c.m, "", run, 2)
			ckpt := filepath.Join(run, "checkpoints", "step_000002")
			files, _ := filepath.Glob(filepath.Join(ckpt, "model-*-dp*.safetensors"))
			g := c.m.DP
			if opts.ShardGroup > 0 {
				g = opts.ShardGroup
			}
			if want := c.m.PP * c.m.TP * g; len(files) != want {
				t.Fatalf("%d per-rank shard files, want %d: one per rank of a shard group, per stage and TP rank", len(files), want)
			}
			resumed, rval := zeroRun(t, opts, c.m, ckpt, "", 0)
			for i, l := range resumed {
				if l != full[2+i] {
					t.Errorf("resumed step %d: loss %v, uninterrupted %v", 3+i, l, full[2+i])
				}
			}
			if rval != val {
				t.Errorf("resumed validation loss %v, uninterrupted %v", rval, val)
			}
			// other layouts and stages: the same weights evaluate alike
			for _, o := range []struct {
				name string
				m    mesh.Mesh
				zero int
			}{{"one process", mesh.Mesh{DP: 1, TP: 1, PP: 1}, 0}, {"dp2 zero1", mesh.Mesh{DP: 2, TP: 1, PP: 1}, 1}, {"dp2 tp2 zero2", mesh.Mesh{DP: 2, TP: 2, PP: 1}, 2}} {
				oo := opts
				oo.Zero, oo.ShardGroup, oo.Steps, oo.Schedule = o.zero, 0, 2, ""
				_, v := zeroRun(t, oo, o.m, ckpt, "", 0)
				_, want := zeroRun(t, withSteps(opts, 2), c.m, ckpt, "", 0)
				if math.Abs(v-want)/want > 1e-5 {
					t.Errorf("%s: validation loss %v after loading the ZeRO-3 checkpoint, %v on its own layout", o.name, v, want)
				}
			}
		})
	}
}

func withSteps(o Options, n int) Options {
	o.Steps = n
	return o
}

// ZeRO-3 checkpoints do not gather: no rank's file holds more than its
// share of any unit (plus one element of rounding per unit).
func TestZeRO3CheckpointFilesAreShares(t *testing.T) {
	opts := testOptions()
	opts.Zero, opts.Steps = 3, 1
	run := t.TempDir()
	zeroRun(t, opts, mesh.Mesh{DP: 4, TP: 1, PP: 1}, "", run, 1)
	ckpt := filepath.Join(run, "checkpoints", "step_000001")
	var sizes []int64
	for r := 0; r < 4; r++ {
		fi, err := os.Stat(filepath.Join(ckpt, fmt.Sprintf("model-pp0-tp0-dp%d.safetensors", r)))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	n := int64(ParamCount(opts.Model)) * 4
	for r, s := range sizes {
		// the header (names, ranges) adds a few kB
		if s > n/4+16<<10 {
			t.Errorf("rank %d wrote %d bytes of a %d-byte model over 4 ranks", r, s, n)
		}
	}
}
