package trainer

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/transport/loopback"
)

// evalOnMesh runs EvalLoss of freshly initialized weights over 3 batches
// of the test tokens on every rank of m and returns rank 0's value; every
// rank must return the same one.
func evalOnMesh(t *testing.T, m mesh.Mesh) float64 {
	t.Helper()
	opts := testOptions()
	trs := loopback.New(m.World())
	vals := make([]float64, m.World())
	errs := make([]error, m.World())
	var wg sync.WaitGroup
	for r := range m.World() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = func() error {
				c, err := testComms(trs[r], m, r)
				if err != nil {
					return err
				}
				tr, err := New(opts, nil, c)
				if err != nil {
					return err
				}
				defer tr.Close()
				coord := m.Coord(r)
				val, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.RowsPerRank(m), Seq: opts.Seq, DPRank: coord.DP, DPSize: m.DP})
				if err != nil {
					return err
				}
				vals[r], err = tr.EvalLoss(context.Background(), val, 3)
				return err
			}()
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("%v rank %d: %v", m, r, err)
		}
		if vals[r] != vals[0] {
			t.Fatalf("%v: rank %d evaluated %v, rank 0 %v", m, r, vals[r], vals[0])
		}
	}
	return vals[0]
}

// TestEvalLossOnAnyMesh: the validation loss evaluated through DP, TP and
// PP groups equals the single process's within float regrouping.
func TestEvalLossOnAnyMesh(t *testing.T) {
	want := evalOnMesh(t, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	if !(want > 3 && want < 5) { // ln(64) = 4.16 for fresh weights
		t.Fatalf("single-process evaluation %v, want about ln(64)", want)
	}
	for _, m := range []mesh.Mesh{{DP: 2, TP: 1, PP: 1}, {DP: 1, TP: 2, PP: 1}, {DP: 1, TP: 1, PP: 2}, {DP: 2, TP: 2, PP: 2}} {
		if got := evalOnMesh(t, m); math.Abs(got-want)/want > 1e-5 {
			t.Errorf("%v: evaluation %.7f, single process %.7f", m, got, want)
		}
	}
}
