package trainer

import (
	"context"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/model"
)

// TestAdaptLoRATrainsOnlyAdapters: with Options.Adapt enabling LoRA the
// optimizer state covers the adapters only, a step changes them and leaves
// every base weight as it was, and the checkpoint holds only adapters.
func TestAdaptLoRATrainsOnlyAdapters(t *testing.T) {
	opts := testOptions()
	opts.Adapt = func(m *model.GPT) error {
		return m.EnableLoRA(model.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "mlp.c_proj"}}, 1)
	}
	loader, _ := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
	tr, err := New(opts, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	lo := tr.Model.LoRA
	if lo == nil {
		t.Fatal("Adapt did not run")
	}
	n := tr.Model.Params.Count()
	if len(tr.Opt.M) != n || n >= lo.Base.Count()/10 {
		t.Fatalf("optimizer state of %d values for %d adapter parameters (base %d)", len(tr.Opt.M), n, lo.Base.Count())
	}
	base := append([]float32(nil), lo.Base.Data...)
	adapters := append([]float32(nil), tr.Model.Params.Data...)
	for i := 0; i < 2; i++ {
		if _, err := tr.TrainStep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range lo.Base.Data {
		if v != base[i] {
			t.Fatalf("frozen base parameter %d changed: %g -> %g", i, base[i], v)
		}
	}
	changed := false
	for i, v := range tr.Model.Params.Data {
		changed = changed || v != adapters[i]
	}
	if !changed {
		t.Fatal("two steps left the adapters unchanged")
	}
	path, err := tr.Save(context.Background(), t.TempDir(), 0, 0, nil, State{})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(opts, loader, nil)
	defer other.Close()
	if _, err := other.Restore(path); err != nil {
		t.Fatal(err)
	}
	for i, v := range other.Model.Params.Data {
		if v != tr.Model.Params.Data[i] {
			t.Fatalf("restored adapter %d = %g, saved %g", i, v, tr.Model.Params.Data[i])
		}
	}
}
