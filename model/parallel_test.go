package model

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/parallel/tensor/tensortest"
)

// The parallel layouts of one model must compute the single process's loss
// and gradients (up to float rounding, since reductions regroup sums).

func parallelTestConfig(act, norm string) Config {
	return Config{VocabSize: 32, NLayer: 4, NHead: 4, NEmbd: 16, NPositions: 8, LayerNormEps: 1e-5,
		Activation: act, Norm: norm, Position: PosLearned, InitStd: 0.2}
}

func testBatch(B, T, V int) (tok, tgt []int32) {
	tok, tgt = make([]int32, B*T), make([]int32, B*T)
	for i := range tok {
		tok[i] = int32((i*7 + 3) % V)
		tgt[i] = int32((i*5 + 1) % V)
	}
	tgt[3] = IgnoreIndex
	return tok, tgt
}

// fullGrads runs the single-process model and returns loss and gradients by name.
func fullGrads(t *testing.T, cfg Config, B, T int) (float64, map[string][]float32) {
	m, err := New(cfg, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7)
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	sum, count, err := m.Forward(tok, tgt, B, T)
	if err != nil {
		t.Fatal(err)
	}
	m.Backward(float32(1 / float64(count)))
	g := map[string][]float32{}
	for _, p := range m.Params.List {
		g[p.Name] = append([]float32(nil), p.Grad...)
	}
	return sum / float64(count), g
}

func closeRel(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	var num, den float64
	for i := range want {
		d := float64(got[i] - want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if e := math.Sqrt(num / math.Max(den, 1e-30)); e > tol {
		t.Errorf("%s: relative L2 error %.2g", what, e)
	}
}

func TestTensorParallelMatchesSingleProcess(t *testing.T) {
	// ALiBi checks that each rank biases its heads with their global slopes
	// (rank*NH/TP + local head); RoPE runs past n_positions (T = 2*8).
	for _, v := range []struct{ act, norm, pos string }{{GELUTanh, LayerNorm, PosLearned}, {SwiGLU, RMSNorm, PosLearned}, {GELUTanh, LayerNorm, PosALiBi}, {SwiGLU, RMSNorm, PosRoPE}} {
		for _, tp := range []int{2, 4} {
			cfg := parallelTestConfig(v.act, v.norm)
			cfg.Position = v.pos
			B, T := 2, 8
			if v.pos == PosRoPE {
				cfg.RopeScaling = &RopeScaling{Type: ScaleYaRN, Factor: 2}
				T = 16
			}
			wantLoss, wantGrad := fullGrads(t, cfg, B, T)
			tok, tgt := testBatch(B, T, cfg.VocabSize)
			losses, full := tpRun(t, cfg, tp, B, T, tok, tgt, func(l Layout) *GPT { return initShard(t, cfg, l, B, T) })
			for r, l := range losses {
				if math.Abs(l-wantLoss)/wantLoss > 1e-5 {
					t.Errorf("%s/%s tp=%d rank %d: loss %.7f, single process %.7f", v.act, v.pos, tp, r, l, wantLoss)
				}
			}
			for name, g := range wantGrad {
				closeRel(t, v.act+"/"+v.pos+" tp grad "+name, full[name], g, 1e-5)
			}
		}
	}
}

func TestPipelineStagesMatchSingleProcess(t *testing.T) {
	for _, pos := range []string{PosLearned, PosALiBi, PosRoPE} {
		t.Run(pos, func(t *testing.T) { checkPipelineStages(t, pos) })
	}
}

func checkPipelineStages(t *testing.T, pos string) {
	cfg := parallelTestConfig(GELUErf, LayerNorm)
	cfg.Position = pos
	B, T := 2, 8
	wantLoss, wantGrad := fullGrads(t, cfg, B, T)
	bounds, err := StageBounds(cfg.NLayer, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	stages := make([]*GPT, 3)
	acts := make([]*Acts, 3)
	for s := range stages {
		m, err := NewSharded(cfg, Stage(nil, bounds, s), B, T, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(7)
		stages[s], acts[s] = m, m.NewActs(B, T)
	}
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	ctx := context.Background()
	var hidden []float32
	var loss float64
	for s, m := range stages {
		sum, count, err := m.ForwardActs(ctx, acts[s], tok, hidden, tgt, B, T)
		if err != nil {
			t.Fatal(err)
		}
		hidden = append([]float32(nil), acts[s].Output()...)
		if s == 2 {
			loss = sum / float64(count)
			if err := m.BackwardActs(ctx, acts[s], nil, float32(1/float64(count))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if math.Abs(loss-wantLoss) > 1e-6*wantLoss {
		t.Fatalf("pipeline loss %.7f, single %.7f", loss, wantLoss)
	}
	dOut := append([]float32(nil), stages[2].DInput(acts[2])...)
	for s := 1; s >= 0; s-- {
		if err := stages[s].BackwardActs(ctx, acts[s], dOut, 0); err != nil {
			t.Fatal(err)
		}
		dOut = append([]float32(nil), stages[s].DInput(acts[s])...)
	}
	seen := map[string]bool{}
	for _, m := range stages {
		for _, p := range m.Params.List {
			if p.Name == "wte.weight" {
				continue
			}
			seen[p.Name] = true
			closeRel(t, "pp grad "+p.Name, p.Grad, wantGrad[p.Name], 1e-6)
		}
	}
	// the tied embedding's gradient is split between the first and last stage
	first, _ := stages[0].Params.Lookup("wte.weight")
	last, _ := stages[2].Params.Lookup("wte.weight")
	if !last.TiedCopy || last.InNorm || first.TiedCopy || !first.InNorm {
		t.Fatal("tied copy flags wrong")
	}
	sum := make([]float32, len(first.Grad))
	for i := range sum {
		sum[i] = first.Grad[i] + last.Grad[i]
	}
	closeRel(t, "pp grad wte (first+last)", sum, wantGrad["wte.weight"], 1e-6)
	for name := range wantGrad {
		if !seen[name] && name != "wte.weight" {
			t.Errorf("parameter %s held by no stage", name)
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	if _, err := StageBounds(cfg.NLayer, 5, nil); err == nil || !strings.Contains(err.Error(), "stages") {
		t.Fatalf("5 stages for 4 layers: %v", err)
	}
	if _, err := StageBounds(4, 2, []int{1, 2}); err == nil {
		t.Fatal("per-stage counts summing to 3 accepted")
	}
	if b, err := StageBounds(5, 2, nil); err != nil || b[1] != 3 || b[2] != 5 {
		t.Fatalf("balanced bounds %v %v", b, err)
	}
	if err := CheckTP(cfg, 3); err == nil || !strings.Contains(err.Error(), "heads") {
		t.Fatalf("tp 3 with 4 heads: %v", err)
	}
}

func TestGradReadyPrefixesGrow(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	m, _ := New(cfg, 1, 4, gemm.New(1))
	m.Init(1)
	var seen []int
	m.GradReady = func(n int) { seen = append(seen, n) }
	tok, tgt := testBatch(1, 4, cfg.VocabSize)
	_, count, _ := m.Forward(tok, tgt, 1, 4)
	m.Backward(float32(1 / float64(count)))
	if len(seen) != cfg.NLayer+2 || seen[len(seen)-1] != m.Params.Count() {
		t.Fatalf("GradReady calls %v (count %d)", seen, m.Params.Count())
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("prefix shrank: %v", seen)
		}
	}
}

// initShard is the model of cfg under layout l, initialized from seed 7
// (nil after reporting an error).
func initShard(t *testing.T, cfg Config, l Layout, B, T int) *GPT {
	m, err := NewSharded(cfg, l, B, T, gemm.New(1))
	if err != nil {
		t.Error(err)
		return nil
	}
	m.Init(7)
	return m
}

// tpRun runs one forward and backward of tok/tgt (B x T) on tp
// tensor-parallel ranks of cfg, each model built by build for its rank's layout
// (nil: it reported an error), and returns each rank's mean loss and
// every parameter's gradient assembled from the ranks' shards.
func tpRun(t *testing.T, cfg Config, tp, B, T int, tok, tgt []int32, build func(Layout) *GPT) ([]float64, map[string][]float32) {
	t.Helper()
	groups := tensortest.Groups(tp)
	full := map[string][]float32{}
	losses := make([]float64, tp)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for r := 0; r < tp; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := Full(cfg)
			l.TP = groups[r]
			m := build(l)
			if m == nil {
				return
			}
			a := m.NewActs(B, T)
			sum, count, err := m.ForwardActs(context.Background(), a, tok, nil, tgt, B, T)
			if err != nil {
				t.Error(err)
				return
			}
			losses[r] = sum / float64(count)
			if err := m.BackwardActs(context.Background(), a, nil, float32(1/float64(count))); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range m.Params.List {
				if full[p.Name] == nil {
					full[p.Name] = make([]float32, Numel(p.Shape))
				}
				p.Shard.Insert(full[p.Name], p.Grad, p.Shape, r, tp)
			}
		}()
	}
	wg.Wait()
	return losses, full
}
