package zero

import (
	"context"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/transport/loopback"
)

func testConfig() model.Config {
	return model.Config{VocabSize: 512, NLayer: 4, NHead: 4, NEmbd: 64, NPositions: 32, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.02}
}

// onRanks runs f on n data-parallel ranks over loopback.
func onRanks(t *testing.T, n int, f func(r int, c *collective.Comm) error) {
	t.Helper()
	trs := loopback.New(n)
	ranks := make([]int, n)
	for i := range ranks {
		ranks[i] = i
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := collective.New(trs[r], ranks, collective.Options{Name: "dp"})
			if err != nil {
				errs[r] = err
				return
			}
			errs[r] = f(r, c)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// One forward and backward under ZeRO-3: each unit is gathered once per
// pass with the next one prefetched, at most the two largest units' worth
// of parameters (plus the tied head's embedding) is gathered at once, the
// owned gradient pieces add up to the replicated model's gradient, and
// afterwards the parameter pages are handed back.
func TestZeRO3PassGathersUnitByUnit(t *testing.T) {
	cfg := testConfig()
	const B, T = 2, 16
	tokens, targets := make([]int32, 2*B*T), make([]int32, 2*B*T)
	for i := range tokens {
		tokens[i], targets[i] = int32(i*7%512), int32(i*11%512)
	}
	// the reference: one process, the whole batch
	ref, err := model.New(cfg, 2*B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	ref.Init(3)
	if _, _, err := ref.Forward(tokens, targets, 2*B, T); err != nil {
		t.Fatal(err)
	}
	ref.Backward(1 / float32(2*B*T))
	for _, unitMin := range []int{0, 1} { // whole blocks, quarters
		testPassGathersUnitByUnit(t, cfg, ref, tokens, targets, unitMin)
	}
}

func testPassGathersUnitByUnit(t *testing.T, cfg model.Config, ref *model.GPT, tokens, targets []int32, unitMin int) {
	const B, T = 2, 16
	onRanks(t, 2, func(r int, c *collective.Comm) error {
		ctx := context.Background()
		m, err := model.New(cfg, B, T, gemm.New(1))
		if err != nil {
			return err
		}
		m.SetUnitMin(unitMin)
		s, err := New(m, c, nil, Options{Stage: 3, Seed: 3, Init: true})
		if err != nil {
			return err
		}
		s.Reset()
		m.Params.ResetGrad()
		a := m.NewActs(B, T)
		in, tg := tokens[r*B*T:(r+1)*B*T], targets[r*B*T:(r+1)*B*T]
		if _, _, err := m.ForwardActs(ctx, a, in, nil, tg, B, T); err != nil {
			return err
		}
		if err := m.BackwardActs(ctx, a, nil, 1/float32(2*B*T)); err != nil {
			return err
		}
		if err := s.Finish(ctx); err != nil {
			return err
		}
		use := s.Use()
		units := m.Units()
		// the plan's prediction is the measurement
		size := make([]int, len(units))
		for i, u := range units {
			size[i] = u.Size()
		}
		wantP, wantG := Peaks(GatherBytes(units, nil, 0, false), size, m.PassGroups(false, false), m.PassGroups(true, false), true, false)
		if use.PeakGathered != wantP || use.PeakGrads != wantG {
			t.Errorf("rank %d: measured peaks %d gathered, %d gradients; Peaks predicts %d, %d", r, use.PeakGathered, use.PeakGrads, wantP, wantG)
		}
		sizes := make([]int, len(units))
		var head int
		for i, u := range units {
			sizes[i] = u.Size()
			if u.Name == "head" {
				head = u.Size()
			}
		}
		sort.Sort(sort.Reverse(sort.IntSlice(sizes)))
		// the embedding comes in chunks no larger than a block
		if limit := 4 * (sizes[0] + sizes[1] + head); use.PeakGathered > limit {
			t.Errorf("rank %d: %d bytes of parameters gathered at once, more than the two largest units and ln_f (%d)", r, use.PeakGathered, limit)
		}
		// forward: wpe, blocks 1..3 and the head follow a prefetch; backward
		// the blocks and wpe again
		if use.Prefetched < 2*cfg.NLayer {
			t.Errorf("rank %d: %d units found prefetched, want at least %d", r, use.Prefetched, 2*cfg.NLayer)
		}
		for _, o := range s.Owned() {
			for i := o[0]; i < o[1]; i++ {
				if d := s.Grad()[i] - ref.Params.Grad[i]; d > 1e-6 || d < -1e-6 {
					t.Errorf("rank %d: gradient %d is %g, replicated %g", r, i, s.Grad()[i], ref.Params.Grad[i])
					return nil
				}
			}
		}
		if err := s.ReleaseAll(); err != nil {
			return err
		}
		if runtime.GOOS == "linux" && os.Getpagesize() == 4096 {
			nonzero := 0
			for _, v := range m.Params.Data {
				if v != 0 {
					nonzero++
				}
			}
			// only the pages a unit shares with a neighbour keep values:
			// at most one at each end of each unit
			if limit := 2 * len(units) * 1024; nonzero > limit {
				t.Errorf("rank %d: %d of %d parameters still hold values after ReleaseAll, more than the %d on shared pages", r, nonzero, len(m.Params.Data), limit)
			}
		}
		return nil
	})
}
