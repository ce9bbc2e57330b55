package finetune

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// TestLoadWeightsMergesAdapters: LoadWeights on an adapter checkpoint
// gives the model its base with the adapters folded in, bit for bit what
// MergeLoRA on the trained model gives; on a plain checkpoint it loads it.
func TestLoadWeightsMergesAdapters(t *testing.T) {
	dir := t.TempDir()
	cfg, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	const B, T = 1, 8
	newModel := func() *model.GPT {
		m, err := model.New(cfg, B, T, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	trained := newModel()
	trained.Init(1)
	base, err := checkpoint.Save(filepath.Join(dir, "base"), 3, trained, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	lc := model.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "mlp.c_fc"}}
	if err := trained.EnableLoRA(lc, 7); err != nil {
		t.Fatal(err)
	}
	for i, p := range trained.Params.List {
		for j := range p.Data { // B starts at zero: give it values so the merge matters
			p.Data[j] += 0.01 * float32((i+j)%7-3)
		}
	}
	run := filepath.Join(dir, "lora")
	adapters, err := checkpoint.Save(run, 5, trained, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteAdapterConfig(run, AdapterConfig{LoRAConfig: lc, Base: base}); err != nil {
		t.Fatal(err)
	}
	if err := trained.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	tokens := []int32{1, 5, 9, 200, 3, 3, 17, 42}
	logits := func(m *model.GPT) []float32 {
		if _, _, err := m.Forward(tokens, nil, B, T); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), m.Logits()...)
	}
	want := logits(trained)

	if ok, err := IsAdapterCheckpoint(adapters); err != nil || !ok {
		t.Fatalf("IsAdapterCheckpoint(adapters) = %v, %v", ok, err)
	}
	if ok, err := IsAdapterCheckpoint(base); err != nil || ok {
		t.Fatalf("IsAdapterCheckpoint(base) = %v, %v", ok, err)
	}
	for _, path := range []string{adapters, run} {
		dirOf, _, err := checkpoint.Resolve(path)
		if err != nil {
			t.Fatal(err)
		}
		got := newModel()
		if err := LoadWeights(dirOf, got); err != nil {
			t.Fatalf("LoadWeights(%s): %v", path, err)
		}
		if got.LoRA != nil {
			t.Fatal("the loaded model still has adapters")
		}
		g := logits(got)
		for i := range want {
			if g[i] != want[i] {
				t.Fatalf("%s: logit %d = %g, merged model %g", path, i, g[i], want[i])
			}
		}
	}
	plain := newModel()
	if err := LoadWeights(base, plain); err != nil {
		t.Fatal(err)
	}
	if l := logits(plain); l[0] == want[0] && l[1] == want[1] {
		t.Fatal("the base checkpoint gave the merged model's logits")
	}

	// without adapter_config.json the adapters cannot find their base
	if err := os.Remove(filepath.Join(run, AdapterConfigFile)); err != nil {
		t.Fatal(err)
	}
	err = LoadWeights(adapters, newModel())
	if err == nil || !strings.Contains(err.Error(), "holds LoRA adapters") || !strings.Contains(err.Error(), AdapterConfigFile) {
		t.Fatalf("adapters without their config: %v", err)
	}
}

// TestLoadWeightsStackedAdapters: adapters trained on a LoRA run (its
// --ckpt was itself adapters) load by merging each base in turn.
func TestLoadWeightsStackedAdapters(t *testing.T) {
	dir := t.TempDir()
	cfg, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	newModel := func() *model.GPT {
		m, err := model.New(cfg, 1, 4, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := newModel()
	m.Init(3)
	prev, err := checkpoint.Save(filepath.Join(dir, "base"), 1, m, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	lc := model.LoRAConfig{Rank: 2, Alpha: 2, Targets: []string{"attn.c_attn"}}
	for i := 0; i < 2; i++ { // two LoRA runs, the second on the first
		if err := m.EnableLoRA(lc, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
		for _, p := range m.Params.List {
			for j := range p.Data {
				p.Data[j] += 0.02 * float32((j+i)%5-2)
			}
		}
		run := filepath.Join(dir, fmt.Sprint("lora", i))
		ck, err := checkpoint.Save(run, 1, m, nil, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteAdapterConfig(run, AdapterConfig{LoRAConfig: lc, Base: prev}); err != nil {
			t.Fatal(err)
		}
		if err := m.MergeLoRA(); err != nil {
			t.Fatal(err)
		}
		prev = ck
	}
	got := newModel()
	if err := LoadWeights(prev, got); err != nil {
		t.Fatal(err)
	}
	for i, w := range m.Params.Data {
		if got.Params.Data[i] != w {
			t.Fatalf("weight %d: %g, want %g (both adapters merged)", i, got.Params.Data[i], w)
		}
	}
}
