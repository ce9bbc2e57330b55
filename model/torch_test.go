package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/safetensors"
)

// The fixtures in testdata/torch_* were written by testdata/gen_fixtures.py,
// an independent GPT-2 in PyTorch computed in float64 from float32 weights.

type torchFixture struct {
	model     *GPT
	ref       *safetensors.File
	tokens    []int32
	targets   []int32
	B, T      int
	stepLoss  []float32
	wantLoss  float64
	paramFile *safetensors.File
}

func loadTorchFixture(t *testing.T, dir string, e *gemm.Engine) *torchFixture {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.WithDefaults()
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
	m, err := New(cfg, B, T, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Params.Load(pf, ""); err != nil {
		t.Fatal(err)
	}
	fx := &torchFixture{model: m, ref: ref, B: B, T: T, paramFile: pf}
	fx.tokens = int32s(t, ref, "tokens")
	fx.targets = int32s(t, ref, "targets")
	loss, _, _ := ref.Float32("loss")
	fx.wantLoss = float64(loss[0])
	fx.stepLoss, _, _ = ref.Float32("step_losses")
	return fx
}

func int32s(t *testing.T, f *safetensors.File, name string) []int32 {
	tt, ok := f.Tensor(name)
	if !ok || tt.DType != safetensors.I32 {
		t.Fatalf("fixture tensor %s missing or not int32", name)
	}
	out := make([]int32, len(tt.Data)/4)
	for i := range out {
		b := tt.Data[4*i:]
		out[i] = int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	}
	return out
}

func relErr(got, want float64) float64 { return math.Abs(got-want) / math.Max(math.Abs(want), 1e-30) }

func relL2(got, want []float32) float64 {
	var num, den float64
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / math.Max(den, 1e-30))
}

func fixtureDirs(t *testing.T) []string {
	dirs, _ := filepath.Glob("testdata/torch_*")
	var out []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	if len(out) < 2 {
		t.Fatalf("expected the gelu and gelu_new fixtures, found %v", out)
	}
	return out
}

func TestMatchesPyTorchLossAndGradients(t *testing.T) {
	for _, engine := range []*gemm.Engine{gemm.New(2), gemm.NewPortable(1)} {
		for _, dir := range fixtureDirs(t) {
			t.Run(filepath.Base(dir)+"/"+engine.KernelName(), func(t *testing.T) {
				fx := loadTorchFixture(t, dir, engine)
				m := fx.model
				sum, count, err := m.Forward(fx.tokens, fx.targets, fx.B, fx.T)
				if err != nil {
					t.Fatal(err)
				}
				loss := sum / float64(count)
				if e := relErr(loss, fx.wantLoss); e > 1e-5 {
					t.Fatalf("loss %.8f, PyTorch %.8f (relative error %.2g)", loss, fx.wantLoss, e)
				}
				m.Params.ZeroGrad()
				m.Backward(float32(1 / float64(count)))
				worst := 0.0
				for _, p := range m.Params.List {
					want, _, err := fx.ref.Float32("grad." + p.Name)
					if err != nil {
						t.Fatal(err)
					}
					e := relL2(p.Grad, want)
					worst = math.Max(worst, e)
					if e > 1e-4 {
						t.Errorf("gradient of %s: relative L2 error %.2g", p.Name, e)
					}
				}
				t.Logf("loss %.8f vs %.8f; worst gradient relative L2 error %.2g", loss, fx.wantLoss, worst)
			})
		}
	}
}

// TestMatchesPyTorchAdamWTrajectory runs 3 AdamW steps with global-norm
// clipping, as the generator did, and compares losses and parameters.
func TestMatchesPyTorchAdamWTrajectory(t *testing.T) {
	for _, dir := range fixtureDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			fx := loadTorchFixture(t, dir, gemm.New(2))
			m := fx.model
			var segs []optim.Segment
			for _, p := range m.Params.List {
				decay := p.Decay && !strings.HasPrefix(p.Name, "wte") && !strings.HasPrefix(p.Name, "wpe")
				segs = append(segs, optim.Segment{Offset: p.Offset, Size: p.Size(), Decay: decay})
			}
			opt, err := optim.NewAdamW(optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}, m.Params.Count(), segs)
			if err != nil {
				t.Fatal(err)
			}
			for step := 0; step <= 3; step++ {
				sum, count, err := m.Forward(fx.tokens, fx.targets, fx.B, fx.T)
				if err != nil {
					t.Fatal(err)
				}
				loss := sum / float64(count)
				if e := relErr(loss, float64(fx.stepLoss[step])); e > 1e-5 {
					t.Fatalf("step %d: loss %.8f, PyTorch %.8f (relative error %.2g)", step, loss, fx.stepLoss[step], e)
				}
				if step == 3 {
					break
				}
				m.Params.ZeroGrad()
				m.Backward(float32(1 / float64(count)))
				optim.Scale(m.Params.Grad, optim.ClipScale(optim.GradNorm(m.Params.Grad), 1.0))
				opt.Update(m.Params.Data, m.Params.Grad, 1e-3)
			}
			for _, p := range m.Params.List {
				want, _, _ := fx.ref.Float32("step3." + p.Name)
				if e := relL2(p.Data, want); e > 1e-4 {
					t.Errorf("%s after 3 steps: relative L2 error %.2g", p.Name, e)
				}
			}
		})
	}
}
