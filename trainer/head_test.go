package trainer

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/mesh"
	dpdata "github.com/strand-ml/strand/parallel/data"
	"github.com/strand-ml/strand/transport/loopback"
)

// testHead is a HeadObjective for tests: a scalar r = w . h + b on the
// final hidden state of each row's last position, regressed with
// 0.5 (r - y)^2 onto y = +1 for even global rows of the step and -1 for
// odd ones. One unit per row.
type testHead struct {
	T, C         int
	firstRow     int       // this data-parallel rank's first row of the global step
	params, grad []float32 // (C+1): w, then b
}

func newTestHead(T, C, firstRow int) *testHead {
	h := &testHead{T: T, C: C, firstRow: firstRow, params: make([]float32, C+1), grad: make([]float32, C+1)}
	for i := 0; i < C; i++ {
		h.params[i] = float32(0.2 * math.Sin(float64(i)+1))
	}
	return h
}

func (h *testHead) Units(targets []int32) int { return len(targets) / h.T }

func (h *testHead) HeadParams() ([]float32, []float32) { return h.params, h.grad }

func (h *testHead) HeadForward(row int, hidden, dHidden []float32) (float64, error) {
	T, C := h.T, h.C
	var loss float64
	for b := 0; b < len(hidden)/(T*C); b++ {
		n := (b*T + T - 1) * C
		x := hidden[n : n+C]
		r := float64(h.params[C])
		for i, w := range h.params[:C] {
			r += float64(w) * float64(x[i])
		}
		y := 1.0
		if (h.firstRow+row+b)%2 == 1 {
			y = -1
		}
		loss += 0.5 * (r - y) * (r - y)
		d := float32(r - y)
		for i, w := range h.params[:C] {
			h.grad[i] += d * x[i]
			dHidden[n+i] = d * w
		}
		h.grad[C] += d
	}
	return loss, nil
}

// runHeadMesh trains opts with a testHead on mesh m (every rank a
// goroutine) and returns rank 0's losses and every rank's final head.
func runHeadMesh(t *testing.T, opts Options, m mesh.Mesh) ([]float64, [][]float32) {
	t.Helper()
	world := m.World()
	trs := loopback.New(world)
	var losses []float64
	heads := make([][]float32, world)
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r := 0; r < world; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = func() error {
				c, err := testComms(trs[r], m, r)
				if err != nil {
					return err
				}
				rows := opts.RowsPerRank(m)
				loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: rows, Seq: opts.Seq, DPRank: c.Coord.DP, DPSize: m.DP})
				if err != nil {
					return err
				}
				tr, err := New(opts, loader, c)
				if err != nil {
					return err
				}
				defer tr.Close()
				h := newTestHead(opts.Seq, opts.Model.NEmbd, c.Coord.DP*rows)
				if err := tr.SetHead(h); err != nil {
					return err
				}
				for tr.Step < opts.Steps {
					st, err := tr.TrainStep(context.Background())
					if err != nil {
						return err
					}
					if r == 0 {
						losses = append(losses, st.Loss)
					}
				}
				heads[r] = h.params
				return nil
			}()
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("%v rank %d: %v", m, r, err)
		}
	}
	return losses, heads
}

// TestHeadObjectiveMeshesMatchSingleProcess: a head objective trains the
// same on every layout: losses within 1e-5 relative of one process, every
// rank ends with the bit-identical head, within 1e-4 of one process's.
func TestHeadObjectiveMeshesMatchSingleProcess(t *testing.T) {
	opts := testOptions()
	want, wantH := runHeadMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	if !(want[len(want)-1] < want[0]) {
		t.Fatalf("head loss did not fall: %v", want)
	}
	for _, c := range []struct {
		name string
		m    mesh.Mesh
		mod  func(*Options)
	}{
		{"dp2 tp2", mesh.Mesh{DP: 2, TP: 2, PP: 1}, nil},
		{"tp2 pp2", mesh.Mesh{DP: 1, TP: 2, PP: 2}, nil},
		{"dp2 pp2 zero1 gpipe", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) {
			o.Schedule = "gpipe"
			o.DP = dpdata.Options{ZeRO1: true, BucketBytes: 4096}
		}},
	} {
		o := opts
		if c.mod != nil {
			c.mod(&o)
		}
		got, heads := runHeadMesh(t, o, c.m)
		for i := range want {
			if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-5 {
				t.Errorf("%s step %d: loss %.7f, single process %.7f", c.name, i+1, got[i], want[i])
			}
		}
		var num, den float64
		for i, w := range wantH[0] {
			d := float64(heads[0][i] - w)
			num, den = num+d*d, den+float64(w)*float64(w)
		}
		if e := math.Sqrt(num / den); e > 1e-4 {
			t.Errorf("%s: head differs from the single process's by relative L2 %.2g", c.name, e)
		}
		for r := range heads {
			for i := range heads[r] {
				if heads[r][i] != heads[0][i] {
					t.Fatalf("%s: rank %d's head differs from rank 0's at %d: %g vs %g", c.name, r, i, heads[r][i], heads[0][i])
				}
			}
		}
	}
}

// nextOnly hides every method of a Batches but Next, so Restore has to
// position it by reading batches.
type nextOnly struct{ b Batches }

func (n nextOnly) Next(in, tg []int32) error { return n.b.Next(in, tg) }

// TestHeadObjectiveResumes: 4 steps straight and 2 + Save + Restore into a
// new trainer + 2 give bit-identical losses and head: the head's
// parameters and moments and the Source's position come back.
func TestHeadObjectiveResumes(t *testing.T) {
	opts := testOptions()
	ctx := context.Background()
	build := func() (*Trainer, *testHead) {
		loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := New(opts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr.Source = nextOnly{loader}
		h := newTestHead(opts.Seq, opts.Model.NEmbd, 0)
		if err := tr.SetHead(h); err != nil {
			t.Fatal(err)
		}
		return tr, h
	}
	steps := func(tr *Trainer, n int) []float64 {
		var out []float64
		for i := 0; i < n; i++ {
			st, err := tr.TrainStep(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st.Loss)
		}
		return out
	}
	a, ha := build()
	defer a.Close()
	want := steps(a, 4)

	b, _ := build()
	defer b.Close()
	got := steps(b, 2)
	path, err := b.Save(ctx, t.TempDir(), 1, 0, nil, State{Seed: opts.Seed, Extra: map[string]any{"note": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	c, hc := build()
	defer c.Close()
	if _, err := c.Restore(path); err != nil {
		t.Fatal(err)
	}
	got = append(got, steps(c, 2)...)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: loss %v after resuming, %v straight", i+1, got[i], want[i])
		}
	}
	for i := range ha.params {
		if hc.params[i] != ha.params[i] {
			t.Fatalf("head %d: %v after resuming, %v straight", i, hc.params[i], ha.params[i])
		}
	}

	// A checkpoint without head state is refused by a trainer with a head.
	plain, err := New(opts, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Source = nextOnly{mustLoader(t, opts)}
	if _, err := plain.TrainStep(ctx); err != nil {
		t.Fatal(err)
	}
	noHead, err := plain.Save(ctx, t.TempDir(), 1, 0, nil, State{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := build()
	defer d.Close()
	if _, err := d.Restore(noHead); err == nil {
		t.Fatal("restoring a checkpoint without head state into a trainer with a head succeeded")
	}
}

func mustLoader(t *testing.T, opts Options) *data.Loader {
	l, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestStateExtraKeys: Extra keys land at the top level of the JSON and
// may not shadow a field.
func TestStateExtraKeys(t *testing.T) {
	raw, err := State{Step: 3, Extra: map[string]any{"reward_head": map[string]any{"bias": 1.5}}}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if s := string(raw); !strings.Contains(s, `"reward_head":{"bias":1.5}`) || !strings.Contains(s, `"step":3`) {
		t.Fatalf("state JSON %s", s)
	}
	if _, err := (State{Extra: map[string]any{"step": 1}}).MarshalJSON(); err == nil {
		t.Fatal("an extra key shadowing a field was accepted")
	}
}
