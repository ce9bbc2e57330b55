package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/safetensors"
)

func ropeConfig(scaling *RopeScaling) Config {
	return Config{VocabSize: 11, NLayer: 2, NHead: 2, NEmbd: 8, NPositions: 4, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosRoPE, InitStd: 0.3, RopeTheta: 100, RopeScaling: scaling}
}

func TestRotaryGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 1))
	B, T, C, NH := 2, 6, 16, 2
	for _, sc := range []*RopeScaling{nil, {Type: ScaleLinear, Factor: 2}, {Type: ScaleNTK, Factor: 3}, {Type: ScaleYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 4}} {
		cfg := Config{NEmbd: C, NHead: NH, NPositions: 4, Position: PosRoPE, RopeTheta: 50, RopeScaling: sc}
		rot, err := NewRotary(cfg, T+3)
		if err != nil {
			t.Fatal(err)
		}
		x, R := randn(r, B*T*3*C, 1), randn(r, B*T*3*C, 1)
		y := make([]float32, len(x))
		loss := func() float64 { copy(y, x); rot.Forward(y, B, T, C, NH, 3); return dotR(y, R) }
		loss()
		// v is not rotated
		for n := 0; n < B*T; n++ {
			for i := 2 * C; i < 3*C; i++ {
				if y[n*3*C+i] != x[n*3*C+i] {
					t.Fatal("rotary changed v")
				}
			}
		}
		dx := append([]float32(nil), R...)
		rot.Backward(dx, B, T, C, NH, 3)
		name := "rope"
		if sc != nil {
			name += "/" + sc.Type
		}
		checkGrad(t, name, x, dx, loss, 40, r)
	}
}

// TestRotaryRelative checks RoPE's defining property: the score of q at
// position p and k at position p' depends only on p - p'.
func TestRotaryRelative(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	C, NH := 8, 1
	cfg := Config{NEmbd: C, NHead: NH, NPositions: 16, Position: PosRoPE}
	rot, _ := NewRotary(cfg, 32)
	q, k := randn(r, C, 1), randn(r, C, 1)
	score := func(pq, pk int) float64 {
		row := func(v []float32, p int) []float32 {
			x := make([]float32, 3*C)
			copy(x, v)
			copy(x[C:], v)
			rot.Forward(x, 1, 1, C, NH, p)
			return x
		}
		a, b := row(q, pq), row(k, pk)
		var s float64
		for i := 0; i < C; i++ {
			s += float64(a[i]) * float64(b[C+i])
		}
		return s
	}
	if a, b := score(5, 2), score(20, 17); math.Abs(a-b) > 1e-5 {
		t.Fatalf("score(5,2)=%g score(20,17)=%g: not relative", a, b)
	}
	if a, b := score(5, 2), score(5, 3); math.Abs(a-b) < 1e-6 {
		t.Fatal("score does not depend on the offset")
	}
}

func TestRopeFrequencies(t *testing.T) {
	cfg := Config{NEmbd: 16, NHead: 2, NPositions: 64, Position: PosRoPE, RopeTheta: 10000}
	base, ms := RopeFrequencies(cfg)
	if ms != 1 || len(base) != 4 || base[0] != 1 || math.Abs(base[1]-0.1) > 1e-12 {
		t.Fatalf("plain frequencies %v mscale %g", base, ms)
	}
	cfg.RopeScaling = &RopeScaling{Type: ScaleLinear, Factor: 4}
	lin, _ := RopeFrequencies(cfg)
	for i := range lin {
		if math.Abs(lin[i]-base[i]/4) > 1e-15 {
			t.Fatalf("linear %v", lin)
		}
	}
	cfg.RopeScaling = &RopeScaling{Type: ScaleNTK, Factor: 4}
	ntk, _ := RopeFrequencies(cfg)
	// base' = base * 4^(8/6): the highest frequency is unchanged, the
	// lowest divided by 4^(8/6 * 6/8) = 4.
	if ntk[0] != 1 || math.Abs(ntk[3]-base[3]/4) > 1e-12 {
		t.Fatalf("ntk %v vs %v", ntk, base)
	}
	cfg.RopeScaling = &RopeScaling{Type: ScaleYaRN, Factor: 4}
	yarn, ms := RopeFrequencies(cfg)
	if math.Abs(ms-(0.1*math.Log(4)+1)) > 1e-15 {
		t.Fatalf("yarn mscale %g", ms)
	}
	// head dim 8, base 1e4, original 64: the correction range is
	// [floor(8 ln(64/(32*2pi)) / (2 ln 1e4)), ceil(8 ln(64/2pi) / (2 ln 1e4))]
	// = [0 (clamped), 2]: pair 0 keeps its frequency, pairs 2 and 3 are
	// fully interpolated, pair 1 is half way (ramp 0.5).
	if yarn[0] != base[0] || math.Abs(yarn[2]-base[2]/4) > 1e-15 || math.Abs(yarn[3]-base[3]/4) > 1e-15 {
		t.Fatalf("yarn %v vs %v", yarn, base)
	}
	if want := 0.5*base[1] + 0.5*base[1]/4; math.Abs(yarn[1]-want) > 1e-15 {
		t.Fatalf("yarn pair 1 = %g want %g", yarn[1], want)
	}
}

func TestALiBiSlopes(t *testing.T) {
	got := ALiBiSlopes(8)
	for i, s := range got {
		if want := math.Pow(2, -float64(i+1)); math.Abs(s-want) > 1e-15 {
			t.Fatalf("8 heads: slope %d = %g want %g", i, s, want)
		}
	}
	// 6 heads: the 4-head slopes, then slopes 0 and 2 of the 8-head set.
	want := []float64{0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125}
	got = ALiBiSlopes(6)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-15 {
			t.Fatalf("6 heads: %v want %v", got, want)
		}
	}
	// TP rank 1 of 2 with 6 heads holds heads 3..5
	local := alibiSlopes(6, 6, 1, 3)
	for h := range local {
		if local[h] != float32(want[3+h]) {
			t.Fatalf("rank 1 slopes %v", local)
		}
	}
}

func TestALiBiAttentionGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 1))
	B, T, C, NH := 2, 5, 12, 3
	a := NewReferenceAttention(2, T)
	a.Slopes = alibiSlopes(NH, NH, 0, NH)
	qkv, R := randn(r, B*T*3*C, 1), randn(r, B*T*C, 1)
	out, att := make([]float32, B*T*C), make([]float32, B*NH*T*T)
	loss := func() float64 { a.Forward(out, att, qkv, B, T, C, NH); return dotR(out, R) }
	loss()
	// With q = k = 0 every score is the bias alone: row t of head h is
	// softmax(-slope*(t-j)).
	zero := make([]float32, len(qkv))
	copy(zero, qkv)
	for n := 0; n < B*T; n++ {
		clear(zero[n*3*C : n*3*C+2*C])
	}
	att0 := make([]float32, len(att))
	a.Forward(out, att0, zero, B, T, C, NH)
	h, tt := 2, 4
	var z float64
	for j := 0; j <= tt; j++ {
		z += math.Exp(-float64(a.Slopes[h]) * float64(tt-j))
	}
	for j := 0; j <= tt; j++ {
		want := math.Exp(-float64(a.Slopes[h])*float64(tt-j)) / z
		if got := att0[(0*NH+h)*T*T+tt*T+j]; math.Abs(float64(got)-want) > 1e-6 {
			t.Fatalf("alibi att[h=%d, t=%d, j=%d] = %g want %g", h, tt, j, got, want)
		}
	}
	loss()
	dqkv := make([]float32, len(qkv))
	a.Backward(dqkv, R, qkv, att, B, T, C, NH)
	checkGrad(t, "alibi dqkv", qkv, dqkv, loss, 60, r)
}

func TestPositionModelGradientsFiniteDifference(t *testing.T) {
	cases := map[string]Config{
		"rope":   ropeConfig(nil),
		"yarn":   ropeConfig(&RopeScaling{Type: ScaleYaRN, Factor: 2, OriginalMaxPositionEmbeddings: 4}),
		"ntk":    ropeConfig(&RopeScaling{Type: ScaleNTK, Factor: 2}),
		"linear": ropeConfig(&RopeScaling{Type: ScaleLinear, Factor: 2}),
		"alibi": {VocabSize: 11, NLayer: 2, NHead: 2, NEmbd: 8, NPositions: 4, LayerNormEps: 1e-5,
			Activation: GELUTanh, Norm: LayerNorm, Position: PosALiBi, InitStd: 0.3},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			B, T := 2, 6 // past n_positions: allowed for rope and alibi
			m, err := New(cfg, B, T, gemm.New(1))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m.Params.Lookup("wpe.weight"); ok {
				t.Fatal("a rope/alibi model has a wpe parameter")
			}
			m.Init(42)
			r := rand.New(rand.NewPCG(14, 1))
			tok, tgt := make([]int32, B*T), make([]int32, B*T)
			for i := range tok {
				tok[i], tgt[i] = int32(r.IntN(11)), int32(r.IntN(11))
			}
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
				if strings.Contains(p.Name, "ln_") || strings.HasSuffix(p.Name, "c_fc.bias") {
					continue // unaffected by positions; covered by the GELU/LayerNorm tests
				}
				checkGrad(t, p.Name, p.Data, grad[p.Offset:p.Offset+p.Size()], loss, 8, r)
			}
		})
	}
}

// TestPositionsMatchPyTorch compares loss, logits and every gradient with
// testdata/pos_* written by gen_pos_fixtures.py (an independent PyTorch
// model with Hugging Face's RoPE/YaRN math and the ALiBi paper's slopes).
func TestPositionsMatchPyTorch(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/pos_*")
	if len(dirs) < 5 {
		t.Fatalf("expected rope, yarn, ntk, linear and alibi fixtures, found %v", dirs)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cfg Config
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			pf, err := safetensors.Read(filepath.Join(dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := safetensors.Read(filepath.Join(dir, "reference.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			tokT, _ := ref.Tensor("tokens")
			B, T := tokT.Shape[0], tokT.Shape[1]
			m, err := New(cfg.WithDefaults(), B, T, gemm.New(2))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Params.Load(pf, ""); err != nil {
				t.Fatal(err)
			}
			tokens, targets := int32s(t, ref, "tokens"), int32s(t, ref, "targets")
			if _, _, err := m.Forward(tokens, nil, B, T); err != nil {
				t.Fatal(err)
			}
			wantLogits, _, _ := ref.Float32("logits")
			if e := relL2(m.Logits(), wantLogits); e > 1e-5 {
				t.Errorf("logits: relative L2 error %.2g", e)
			}
			sum, count, err := m.Forward(tokens, targets, B, T)
			if err != nil {
				t.Fatal(err)
			}
			want, _, _ := ref.Float32("loss")
			if e := relErr(sum/float64(count), float64(want[0])); e > 1e-5 {
				t.Fatalf("loss %.7f, PyTorch %.7f", sum/float64(count), want[0])
			}
			m.Params.ZeroGrad()
			m.Backward(float32(1 / float64(count)))
			for _, p := range m.Params.List {
				g, _, err := ref.Float32("grad." + p.Name)
				if err != nil {
					t.Fatal(err)
				}
				if e := relL2(p.Grad, g); e > 1e-4 {
					t.Errorf("gradient of %s: relative L2 error %.2g", p.Name, e)
				}
			}
		})
	}
}

func TestPositionConfigErrors(t *testing.T) {
	cfg := ropeConfig(nil)
	cfg.NEmbd, cfg.NHead = 6, 2 // head width 3
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "even") {
		t.Fatalf("odd rope head width: %v", err)
	}
	cfg = ropeConfig(&RopeScaling{Type: "dynamic", Factor: 2})
	if err := cfg.Validate(); err == nil {
		t.Fatal("unknown scaling type accepted")
	}
	cfg = ropeConfig(&RopeScaling{Type: ScaleYaRN, Factor: 0.5})
	if err := cfg.Validate(); err == nil {
		t.Fatal("scaling factor 0.5 accepted")
	}
	cfg, _ = Preset("tiny")
	cfg.RopeScaling = &RopeScaling{Type: ScaleLinear, Factor: 2}
	if err := cfg.Validate(); err == nil {
		t.Fatal("rope_scaling on a learned-position model accepted")
	}
	cfg.RopeScaling = nil
	cfg.Position = "sinusoidal"
	if err := cfg.Validate(); err == nil {
		t.Fatal("unknown position accepted")
	}
	// learned positions refuse to run past n_positions; alibi does not
	cfg, _ = Preset("tiny")
	if _, err := New(cfg, 1, 2*cfg.NPositions, gemm.New(1)); err == nil || !strings.Contains(err.Error(), "learned") {
		t.Fatalf("learned model at 2x length: %v", err)
	}
	cfg.Position = PosALiBi
	if _, err := New(cfg, 1, 2*cfg.NPositions, gemm.New(1)); err != nil {
		t.Fatalf("alibi model at 2x length: %v", err)
	}
	ctxCfg := ropeConfig(&RopeScaling{Type: ScaleYaRN, Factor: 4})
	if ctxCfg.Context() != 16 {
		t.Fatalf("context of a 4-position model scaled 4x: %d", ctxCfg.Context())
	}
}
