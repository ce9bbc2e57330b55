package checkpoint

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/hf"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
)

// A strand-trained Llama-family checkpoint exports to the Hugging Face
// layout and loads back bit-identically through the same LoadModel that
// reads strand checkpoints; a Hugging Face directory (sharded, bf16)
// resolves and loads like any checkpoint.
func TestLlamaCheckpointExportsToHuggingFace(t *testing.T) {
	cfg, err := model.Preset("llama-tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, 1, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	run := t.TempDir()
	opt, _ := optim.NewAdamW(optim.DefaultAdamW(), m.Params.Count(), []optim.Segment{{Offset: 0, Size: m.Params.Count(), Decay: true}})
	dir, err := Save(run, 1, m, opt, state{1, "llama"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadConfig(dir)
	if err != nil || !sameJSON(got, cfg) {
		t.Fatalf("strand checkpoint config %+v %v, want %+v", got, err, cfg)
	}
	out := filepath.Join(t.TempDir(), "hf")
	if err := ExportHFFamily(dir, out, hf.ExportOptions{MaxShardBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, hf.IndexFile)); err != nil {
		t.Fatalf("sharded export has no index: %v", err)
	}
	resolved, _, err := Resolve(out)
	if err != nil || resolved != out {
		t.Fatalf("Resolve(hf dir) = %q, %v", resolved, err)
	}
	cfg2, err := ReadConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.KVHeads() != cfg.KVHeads() || cfg2.Hidden() != cfg.Hidden() || !cfg2.UntiedHead || cfg2.NLayer != cfg.NLayer {
		t.Fatalf("config read back %+v, exported %+v", cfg2, cfg)
	}
	m2, err := model.New(cfg2, 1, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := LoadModel(out, m2); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params.List {
		q, ok := m2.Params.Lookup(p.Name)
		if !ok {
			t.Fatalf("%s missing after the round trip", p.Name)
		}
		for i := range p.Data {
			if p.Data[i] != q.Data[i] {
				t.Fatalf("%s[%d] = %g after the round trip, was %g", p.Name, i, q.Data[i], p.Data[i])
			}
		}
	}
	// a GPT-2 checkpoint is refused as a Llama export
	gdir, err := Save(t.TempDir(), 1, tinyModel(t, 1), nil, state{}, 0)
	if err == nil {
		err = ExportHFFamily(gdir, t.TempDir(), hf.ExportOptions{})
	}
	if err == nil {
		t.Fatal("a GPT-2 model exported as a Llama")
	}
}

func sameJSON(a, b model.Config) bool {
	return a.NKVHead == b.NKVHead && a.NoBias == b.NoBias && a.UntiedHead == b.UntiedHead && a.NEmbd == b.NEmbd && a.Norm == b.Norm && a.Activation == b.Activation && a.Position == b.Position
}

// TestLlamaReshardAcrossKVReplication: a grouped-query model saved with
// its kv heads replicated (TP 4 over 2 kv heads) reshards to split kv
// heads (TP 2) and to one process and back, bit for bit.
func TestLlamaReshardAcrossKVReplication(t *testing.T) {
	cfg := model.Config{VocabSize: 64, NLayer: 2, NHead: 4, NKVHead: 2, NEmbd: 32, NPositions: 16, LayerNormEps: 1e-5,
		Activation: model.SwiGLU, Norm: model.RMSNorm, Position: model.PosRoPE, MLPHidden: 40, InitStd: 0.02,
		NoBias: true, QKVBias: true, UntiedHead: true}
	dir := t.TempDir()
	src := filepath.Join(dir, "tp4")
	writeShardedFixture(t, src, cfg, 4, 1)
	prev := src
	for _, c := range []struct {
		name   string
		tp, pp int
	}{{"single", 1, 1}, {"tp2pp2", 2, 2}, {"tp4pp2", 4, 2}, {"back", 1, 1}} {
		next := filepath.Join(dir, c.name)
		if err := Reshard(prev, next, c.tp, c.pp); err != nil {
			t.Fatalf("reshard to %s: %v", c.name, err)
		}
		prev = next
	}
	ref, _ := model.New(cfg, 1, 1, gemm.New(1))
	ref.Init(3)
	for _, name := range []string{"single", "back"} {
		got, _ := model.New(cfg, 1, 1, gemm.New(1))
		if err := LoadModel(filepath.Join(dir, name), got); err != nil {
			t.Fatal(err)
		}
		for i := range ref.Params.Data {
			if ref.Params.Data[i] != got.Params.Data[i] {
				t.Fatalf("%s: element %d is %g, %g at init", name, i, got.Params.Data[i], ref.Params.Data[i])
			}
		}
	}
}
