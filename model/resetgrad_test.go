package model

import (
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// TestResetGradMatchesZeroGrad: a step started with ResetGrad (gradients
// overwritten by their first contribution, never cleared) gives the same
// gradient bits as ZeroGrad then accumulate, over two micro-batches (the
// second accumulates), with the tied embedding's two contributions, for
// 1 and 2 threads, with and without LoRA adapters (frozen base).
func TestResetGradMatchesZeroGrad(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	cfg.NEmbd, cfg.NPositions = 48, 16
	B, T := 2, 16
	for _, lora := range []bool{false, true} {
		for _, threads := range []int{1, 2} {
			run := func(reset bool) []float32 {
				m, err := New(cfg, B, T, gemm.New(threads))
				if err != nil {
					t.Fatal(err)
				}
				m.splitMin = 5
				m.Init(3)
				if lora {
					if err := m.EnableLoRA(allLoRA, 5); err != nil {
						t.Fatal(err)
					}
				}
				for i := range m.Params.Data {
					m.Params.Data[i] += 0.05 * float32(math.Sin(float64(i)))
				}
				var ready []int
				m.GradReady = func(n int) { // every reported prefix is final: no stale value left
					ready = append(ready, n)
					for i, g := range m.Params.Grad[:n] {
						if g == 1e6 {
							t.Fatalf("lora %v threads %d: Grad[%d] still stale when reported ready (prefix %d)", lora, threads, i, n)
						}
					}
				}
				for step := 0; step < 2; step++ {
					if reset {
						for i := range m.Params.Grad {
							m.Params.Grad[i] = 1e6 // the previous step's values: must never leak
						}
						m.Params.ResetGrad()
					} else {
						m.Params.ZeroGrad()
					}
					for mb := 0; mb < 2; mb++ {
						tok, tgt := testBatch(B, T, cfg.VocabSize)
						for i := range tok {
							tok[i] = (tok[i] + int32(mb+step)) % int32(cfg.VocabSize)
						}
						_, count, err := m.Forward(tok, tgt, B, T)
						if err != nil {
							t.Fatal(err)
						}
						m.Backward(float32(1 / float64(count)))
					}
				}
				if len(ready) == 0 {
					t.Fatal("no gradient reported ready")
				}
				return append([]float32(nil), m.Params.Grad...)
			}
			want, got := run(false), run(true)
			nonzero := 0
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && got[i] != want[i] {
					t.Fatalf("lora %v threads %d: Grad[%d] = %g after ResetGrad, %g after ZeroGrad", lora, threads, i, got[i], want[i])
				}
				if want[i] != 0 {
					nonzero++
				}
			}
			if nonzero < len(want)/2 {
				t.Fatalf("lora %v threads %d: only %d of %d gradients nonzero", lora, threads, nonzero, len(want))
			}
		}
	}
}

// TestResetGradClearsUnwritten: a gradient the backward never writes is
// cleared when its prefix is reported ready; one it wrote is kept, and a
// second write adds.
func TestResetGradClearsUnwritten(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	m, err := New(cfg, 1, 4, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Params.Grad {
		m.Params.Grad[i] = 3
	}
	m.Params.ResetGrad()
	first, second := m.Params.List[0], m.Params.List[1]
	if m.gradBeta(first.Grad) != 0 || m.gradBeta(first.Grad) != 1 {
		t.Fatal("the first write to a stale gradient must overwrite (beta 0), the next add (beta 1)")
	}
	if m.gradBeta(first.Grad[1:]) != 1 {
		t.Fatal("a slice that is no parameter's whole gradient is never stale")
	}
	first.Grad[0] = 7
	m.gradReady(first.Offset + len(first.Grad) + len(second.Grad))
	if first.Grad[0] != 7 || first.Grad[1] != 3 {
		t.Fatalf("written gradient changed by the ready report: %v", first.Grad[:2])
	}
	for i, g := range second.Grad {
		if g != 0 {
			t.Fatalf("unwritten %s[%d] = %g after ready, want 0", second.Name, i, g)
		}
	}
	if last := m.Params.List[len(m.Params.List)-1]; last.Grad[0] != 3 {
		t.Fatalf("%s cleared before its prefix was reported ready", last.Name)
	}
	m.gradReady(len(m.Params.Grad))
	for i, g := range m.Params.Grad[first.Offset+len(first.Grad):] {
		if g != 0 {
			t.Fatalf("Grad[%d] = %g after the end of backward, want 0", first.Offset+len(first.Grad)+i, g)
		}
	}
	m.Params.ZeroGrad()
	if m.gradBeta(first.Grad) != 1 {
		t.Fatal("after ZeroGrad nothing is stale")
	}
}
