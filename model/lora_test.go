package model

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

func f32s(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %.7g, PyTorch %.7g", what, i, got[i], want[i])
		}
	}
}

// TestLoRAMatchesPyTorch checks the adapter's forward and backward against
// testdata/finetune.json (gen_finetune_fixtures.py), and that merging the
// adapter into the base weight gives the same output.
func TestLoRAMatchesPyTorch(t *testing.T) {
	raw, err := os.ReadFile("testdata/finetune.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Lora struct {
			N, C, OC, R                      int
			Alpha                            float64
			X, W, B, A, Bmat, Rup, Y, Dx, Da []float64
			Db                               []float64
		}
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	l := fx.Lora
	e := gemm.New(1)
	scale := float32(l.Alpha / float64(l.R))
	x, w, b, a, bm, rup := f32s(l.X), f32s(l.W), f32s(l.B), f32s(l.A), f32s(l.Bmat), f32s(l.Rup)
	y, h := make([]float32, l.N*l.OC), make([]float32, l.N*l.R)
	LinearForward(e, y, x, w, b, l.N, l.C, l.OC)
	LoRAForward(e, y, h, x, a, bm, l.N, l.C, l.OC, l.R, scale)
	closeTo(t, "y", y, l.Y, 1e-5)

	dx, dw, db := make([]float32, l.N*l.C), make([]float32, l.C*l.OC), make([]float32, l.OC)
	da, dbm, dh := make([]float32, len(a)), make([]float32, len(bm)), make([]float32, l.N*l.R)
	LinearBackward(e, dx, dw, db, rup, x, w, l.N, l.C, l.OC, false)
	LoRABackward(e, dx, da, dbm, dh, rup, x, h, a, bm, l.N, l.C, l.OC, l.R, scale)
	closeTo(t, "dx", dx, l.Dx, 1e-5)
	closeTo(t, "dA", da, l.Da, 1e-5)
	closeTo(t, "dB", dbm, l.Db, 1e-5)

	MergeLoRA(e, w, a, bm, l.C, l.OC, l.R, scale)
	merged := make([]float32, l.N*l.OC)
	LinearForward(e, merged, x, w, b, l.N, l.C, l.OC)
	closeTo(t, "merged y", merged, l.Y, 1e-5)
}

// TestMaskedCrossEntropyMatchesPyTorch: the SFT loss (mean over
// non-ignored targets) and its gradient, as the trainer computes it
// (loss sum / count, backward scale 1/count).
func TestMaskedCrossEntropyMatchesPyTorch(t *testing.T) {
	raw, err := os.ReadFile("testdata/finetune.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		SFT struct {
			N, V            int
			Logits, Dlogits []float64
			Targets         []int32
			Loss            float64
		}
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	s := fx.SFT
	logits, losses := f32s(s.Logits), make([]float32, s.N)
	sum, count := CrossEntropyForward(losses, logits, s.Targets, s.N, s.V)
	if count != 3 || math.Abs(sum/float64(count)-s.Loss) > 1e-5 {
		t.Fatalf("masked loss %.7g over %d, PyTorch %.7g over 3", sum/float64(count), count, s.Loss)
	}
	CrossEntropyBackward(logits, s.Targets, s.N, s.V, float32(1/float64(count)))
	closeTo(t, "dlogits", logits, s.Dlogits, 1e-5)
}
