package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// Finite-difference checks of every layer, in pure Go. Each layer's output
// is reduced to a scalar L = sum(out * R) for a fixed random R, so dL/dout =
// R; the analytic gradient from Backward is compared with central
// differences (L(x+h) - L(x-h)) / 2h, extrapolated, at sampled coordinates.

func randn(r *rand.Rand, n int, std float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * std)
	}
	return x
}

func dotR(out, R []float32) float64 {
	var s float64
	for i := range out {
		s += float64(out[i]) * float64(R[i])
	}
	return s
}

// checkGrad compares analytic[i] with the numeric derivative of loss with
// respect to x[i] for up to samples coordinates.
func checkGrad(t *testing.T, what string, x, analytic []float32, loss func() float64, samples int, r *rand.Rand) {
	t.Helper()
	const h = 1e-2
	var maxErr float64
	for s := 0; s < samples; s++ {
		i := r.IntN(len(x))
		orig := x[i]
		central := func(h float32) float64 {
			x[i] = orig + h
			lp := loss()
			x[i] = orig - h
			lm := loss()
			x[i] = orig
			return (lp - lm) / (2 * float64(h))
		}
		// Richardson extrapolation cancels the h^2 term of the central
		// difference, so curvature does not masquerade as a wrong gradient.
		num := (4*central(h/2) - central(h)) / 3
		a := float64(analytic[i])
		err := math.Abs(num-a) / math.Max(1e-2, math.Abs(num)+math.Abs(a))
		maxErr = math.Max(maxErr, err)
		if err > 2e-2 {
			t.Errorf("%s[%d]: analytic %.6g numeric %.6g", what, i, a, num)
		}
	}
	t.Logf("%s: max relative error %.2g over %d samples", what, maxErr, samples)
}

func TestLayerNormGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	N, C := 5, 16
	x, w, b := randn(r, N*C, 1), randn(r, C, 1), randn(r, C, 1)
	R := randn(r, N*C, 1)
	out, mean, rstd := make([]float32, N*C), make([]float32, N), make([]float32, N)
	loss := func() float64 { LayerNormForward(out, mean, rstd, x, w, b, N, C, 1e-5); return dotR(out, R) }
	loss()
	dx, dw, db := make([]float32, N*C), make([]float32, C), make([]float32, C)
	LayerNormBackward(dx, dw, db, R, x, w, mean, rstd, N, C)
	checkGrad(t, "dx", x, dx, loss, 40, r)
	checkGrad(t, "dw", w, dw, loss, 16, r)
	checkGrad(t, "db", b, db, loss, 16, r)
}

func TestRMSNormGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 1))
	N, C := 5, 16
	x, w := randn(r, N*C, 1), randn(r, C, 1)
	R := randn(r, N*C, 1)
	out, rstd := make([]float32, N*C), make([]float32, N)
	loss := func() float64 { RMSNormForward(out, rstd, x, w, N, C, 1e-5); return dotR(out, R) }
	loss()
	dx, dw := make([]float32, N*C), make([]float32, C)
	RMSNormBackward(dx, dw, R, x, w, rstd, N, C)
	checkGrad(t, "dx", x, dx, loss, 40, r)
	checkGrad(t, "dw", w, dw, loss, 16, r)
}

func TestLinearGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 1))
	e := gemm.New(1)
	N, C, OC := 6, 8, 5
	x, w, b := randn(r, N*C, 1), randn(r, C*OC, 1), randn(r, OC, 1)
	R := randn(r, N*OC, 1)
	out := make([]float32, N*OC)
	loss := func() float64 { LinearForward(e, out, x, w, b, N, C, OC); return dotR(out, R) }
	loss()
	dx, dw, db := make([]float32, N*C), make([]float32, C*OC), make([]float32, OC)
	LinearBackward(e, dx, dw, db, R, x, w, N, C, OC, false)
	checkGrad(t, "dx", x, dx, loss, 30, r)
	checkGrad(t, "dw", w, dw, loss, 30, r)
	checkGrad(t, "db", b, db, loss, 5, r)
}

func TestActivationGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 1))
	n := 64
	for _, exact := range []bool{false, true} {
		x, R := randn(r, n, 2), randn(r, n, 1)
		out := make([]float32, n)
		loss := func() float64 { GELUForward(out, x, exact); return dotR(out, R) }
		dx := make([]float32, n)
		GELUBackward(dx, x, R, exact)
		name := "gelu_tanh"
		if exact {
			name = "gelu_erf"
		}
		checkGrad(t, name, x, dx, loss, 40, r)
	}
	N, H := 4, 8
	x, R := randn(r, N*2*H, 2), randn(r, N*H, 1)
	out := make([]float32, N*H)
	loss := func() float64 { SwiGLUForward(out, x, N, H); return dotR(out, R) }
	dx := make([]float32, N*2*H)
	SwiGLUBackward(dx, x, R, N, H)
	checkGrad(t, "swiglu", x, dx, loss, 50, r)
}

func TestGELUValues(t *testing.T) {
	// Reference values of torch.nn.functional.gelu (approximate='none'/'tanh').
	x := []float32{-3, -1, 0, 0.5, 2}
	wantErf := []float64{-0.0040496, -0.15865526, 0, 0.34573123, 1.9544997}
	wantTanh := []float64{-0.0036374, -0.15880801, 0, 0.34571401, 1.9545977}
	out := make([]float32, len(x))
	GELUForward(out, x, true)
	for i := range x {
		if math.Abs(float64(out[i])-wantErf[i]) > 1e-6 {
			t.Errorf("gelu erf(%g) = %g want %g", x[i], out[i], wantErf[i])
		}
	}
	GELUForward(out, x, false)
	for i := range x {
		if math.Abs(float64(out[i])-wantTanh[i]) > 1e-6 {
			t.Errorf("gelu tanh(%g) = %g want %g", x[i], out[i], wantTanh[i])
		}
	}
}

func TestAttentionGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 1))
	B, T, C, NH := 2, 5, 8, 2
	for _, threads := range []int{1, 3} {
		a := NewReferenceAttention(threads, T)
		qkv, R := randn(r, B*T*3*C, 1), randn(r, B*T*C, 1)
		out, att := make([]float32, B*T*C), make([]float32, B*NH*T*T)
		loss := func() float64 { a.Forward(out, att, qkv, B, T, C, NH); return dotR(out, R) }
		loss()
		dqkv := make([]float32, len(qkv))
		a.Backward(dqkv, R, qkv, att, B, T, C, NH)
		checkGrad(t, "dqkv", qkv, dqkv, loss, 60, r)
	}
}

func TestAttentionIsCausal(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 1))
	B, T, C, NH := 1, 6, 8, 2
	a := NewReferenceAttention(1, T)
	qkv := randn(r, B*T*3*C, 1)
	out1, out2, att := make([]float32, B*T*C), make([]float32, B*T*C), make([]float32, B*NH*T*T)
	a.Forward(out1, att, qkv, B, T, C, NH)
	// Changing the last position's keys and values must not change earlier outputs.
	for i := (T-1)*3*C + C; i < T*3*C; i++ {
		qkv[i] += 1
	}
	a.Forward(out2, att, qkv, B, T, C, NH)
	for i := 0; i < (T-1)*C; i++ {
		if out1[i] != out2[i] {
			t.Fatalf("output %d changed when a later position changed", i)
		}
	}
}

func TestCrossEntropyGradientsAndIgnoreIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 1))
	N, V := 4, 7
	logits := randn(r, N*V, 2)
	targets := []int32{3, IgnoreIndex, 0, 6}
	work := make([]float32, N*V)
	losses := make([]float32, N)
	loss := func() float64 {
		copy(work, logits)
		s, _ := CrossEntropyForward(losses, work, targets, N, V)
		return s
	}
	s := loss()
	_, count := CrossEntropyForward(losses, append([]float32(nil), logits...), targets, N, V)
	if count != 3 {
		t.Fatalf("counted %d positions, want 3", count)
	}
	if losses[1] != 0 {
		t.Fatalf("ignored position has loss %g", losses[1])
	}
	// explicit value of row 0
	var z float64
	for _, v := range logits[:V] {
		z += math.Exp(float64(v))
	}
	if want := math.Log(z) - float64(logits[3]); math.Abs(float64(losses[0])-want) > 1e-5 {
		t.Fatalf("loss row 0 = %g want %g", losses[0], want)
	}
	_ = s
	loss()
	CrossEntropyBackward(work, targets, N, V, 1)
	for i := V; i < 2*V; i++ {
		if work[i] != 0 {
			t.Fatal("ignored row has a gradient")
		}
	}
	dl := append([]float32(nil), work...)
	checkGrad(t, "dlogits", logits, dl, loss, 28, r)
}

// TestModelGradientsFiniteDifference checks whole-model gradients for each
// variant (norm, activation) on a model small enough for float32 differences.
func TestModelGradientsFiniteDifference(t *testing.T) {
	for _, v := range []struct{ act, norm string }{{GELUTanh, LayerNorm}, {GELUErf, LayerNorm}, {SwiGLU, RMSNorm}} {
		t.Run(v.act+"/"+v.norm, func(t *testing.T) {
			cfg := Config{VocabSize: 11, NLayer: 2, NHead: 2, NEmbd: 8, NPositions: 6, LayerNormEps: 1e-5,
				Activation: v.act, Norm: v.norm, Position: PosLearned, InitStd: 0.3}
			B, T := 2, 5
			m, err := New(cfg, B, T, gemm.New(2))
			if err != nil {
				t.Fatal(err)
			}
			m.Init(42)
			r := rand.New(rand.NewPCG(8, 1))
			tok, tgt := make([]int32, B*T), make([]int32, B*T)
			for i := range tok {
				tok[i], tgt[i] = int32(r.IntN(11)), int32(r.IntN(11))
			}
			tgt[4] = IgnoreIndex
			loss := func() float64 {
				s, _, err := m.Forward(tok, tgt, B, T)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			loss()
			m.Params.ZeroGrad()
			m.Backward(1)
			grad := append([]float32(nil), m.Params.Grad...)
			for _, p := range m.Params.List {
				checkGrad(t, p.Name, p.Data, grad[p.Offset:p.Offset+p.Size()], loss, 6, r)
			}
		})
	}
}

func TestBadInputIsAnError(t *testing.T) {
	cfg, _ := Preset("tiny")
	m, err := New(cfg, 2, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	tok := make([]int32, 16)
	tok[5] = 256
	if _, _, err := m.Forward(tok, nil, 2, 8); err == nil {
		t.Fatal("token id 256 accepted by a vocab-256 model")
	}
	if _, _, err := m.Forward(make([]int32, 18), nil, 2, 9); err == nil {
		t.Fatal("sequence longer than the buffers accepted")
	}
	cfg.NHead = 3
	if _, err := New(cfg, 1, 8, gemm.New(1)); err == nil {
		t.Fatal("3 heads for d_model 128 accepted")
	}
	cfg, _ = Preset("tiny")
	if _, err := New(cfg, 1, 65, gemm.New(1)); err == nil {
		t.Fatal("sequence 65 for a 64-position learned model accepted")
	}
}
