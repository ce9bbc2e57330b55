package zero

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// Under bf16 a block part is gathered in the compute precision: its
// rounded copy holds round(master) everywhere, its float32 buffer holds
// the norm and bias but not the matrix (its pages stay handed back), and
// the resident bytes are GatherBytes'. GatherAll afterwards
// gives every float32 parameter (readers of the whole model).
func TestZeRO3GathersInComputePrecision(t *testing.T) {
	cfg := testConfig()
	ref, err := model.New(cfg, 1, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	ref.Init(5)
	onRanks(t, 3, func(r int, c *collective.Comm) error {
		ctx := context.Background()
		m, err := model.New(cfg, 1, 8, gemm.New(1))
		if err != nil {
			return err
		}
		m.SetUnitMin(1) // quarters: h.1.mlp.in holds ln_2 and c_fc
		s, err := New(m, c, nil, Options{Stage: 3, Seed: 5, Init: true, Precision: model.BF16})
		if err != nil {
			return err
		}
		m.SetBF16(true)
		units := m.Units()
		low := m.LowPrecisionRanges()
		u, next := -1, -1 // h.1's MLP input (ln_2, c_fc), and the part after it
		for i, x := range units {
			switch x.Name {
			case "h.1.mlp.in":
				u = i
			case "h.1.mlp.out":
				next = i
			}
		}
		if err := s.Need(ctx, u, false); err != nil {
			return err
		}
		b16, _ := m.PrecisionCopy()
		un := units[u]
		isLow := func(f int) bool { return overlap(low, f, f+1) == 1 }
		nLow := 0
		for f := un.Lo; f < un.Hi; f++ {
			want := ref.Params.Data[f]
			if got := b16[f]; got != collective.BF16FromFloat32(want) {
				return fmt.Errorf("copy[%d] = %#x, want round(%g) = %#x", f, got, want, collective.BF16FromFloat32(want))
			}
			if isLow(f) {
				nLow++
				if v := m.Params.Data[f]; v != 0 {
					return fmt.Errorf("float32 value of matrix element %d is resident (%g)", f, v)
				}
			} else if v := m.Params.Data[f]; math.Float32bits(v) != math.Float32bits(want) {
				return fmt.Errorf("float32 parameter %d = %g, want %g", f, v, want)
			}
		}
		if nLow == 0 || nLow == un.Size() {
			return fmt.Errorf("h.1.mlp.in: %d of %d elements in low-precision ranges; want c_fc's weight only", nLow, un.Size())
		}
		if err := s.Done(ctx, u, false); err != nil {
			return err
		}
		gb := GatherBytes(units, low, 2, false)
		if want := 4*un.Size() + 2*un.Size(); gb[u] >= want || gb[u] != 2*un.Size()+4*(un.Size()-nLow) {
			return fmt.Errorf("h.1.mlp.in gathers %d bytes, want %d (copy of all, float32 of the %d others)", gb[u], 2*un.Size()+4*(un.Size()-nLow), un.Size()-nLow)
		}
		if p := s.Use().PeakGathered; p != gb[u]+gb[next] {
			return fmt.Errorf("peak %d bytes gathered for h.1.mlp.in and its prefetch (%d + %d)", p, gb[u], gb[next])
		}
		if err := s.GatherAll(ctx); err != nil {
			return err
		}
		for f, want := range ref.Params.Data {
			if v := m.Params.Data[f]; math.Float32bits(v) != math.Float32bits(want) {
				return fmt.Errorf("after GatherAll parameter %d = %g, want %g", f, v, want)
			}
		}
		return s.ReleaseAll()
	})
}
