package checkpoint

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
)

// writeShardedFixture writes a tp x pp sharded checkpoint of a freshly
// initialized model with moments set to known values.
func writeShardedFixture(t *testing.T, dir string, cfg model.Config, tp, pp int) {
	t.Helper()
	bounds, err := model.StageBounds(cfg.NLayer, pp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := 0; p < pp; p++ {
		for r := 0; r < tp; r++ {
			m, err := model.NewSharded(cfg, model.Stage(offlineGroup{r, tp}, bounds, p), 1, 1, gemm.New(1))
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3)
			// moments: the parameters scaled, so they shard like them
			m1, v1 := make([]float32, m.Params.Count()), make([]float32, m.Params.Count())
			for i, x := range m.Params.Data {
				m1[i], v1[i] = 2*x, x*x
			}
			if err := WriteShard(dir, mesh.Coord{PP: p, TP: r}, m, m1, v1, 9); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := WriteIndex(dir, 9, mesh.Mesh{DP: 1, TP: tp, PP: pp}, cfg); err != nil {
		t.Fatal(err)
	}
	if err := WriteTrainerState(dir, map[string]any{"step": 9}); err != nil {
		t.Fatal(err)
	}
	if err := writeCommit(dir, 9); err != nil {
		t.Fatal(err)
	}
}

func TestReshardRoundTripsAreBitIdentical(t *testing.T) {
	cfg := model.Config{VocabSize: 64, NLayer: 4, NHead: 4, NEmbd: 32, NPositions: 16, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.02}
	dir := t.TempDir()
	src := filepath.Join(dir, "tp2pp2")
	writeShardedFixture(t, src, cfg, 2, 2)
	chain := []struct {
		name   string
		tp, pp int
	}{{"single", 1, 1}, {"tp2", 2, 1}, {"pp2", 1, 2}, {"tp4pp2", 4, 2}, {"back", 1, 1}}
	prev := src
	for _, c := range chain {
		next := filepath.Join(dir, c.name)
		if err := Reshard(prev, next, c.tp, c.pp); err != nil {
			t.Fatalf("reshard to %s: %v", c.name, err)
		}
		if err := Verify(next); err != nil {
			t.Fatal(err)
		}
		prev = next
	}
	// The single-file checkpoints before and after the chain must match byte
	// for byte, and equal the single-process initialization.
	for _, f := range []string{ModelFile, OptimizerFile} {
		a, _ := os.ReadFile(filepath.Join(dir, "single", f))
		b, _ := os.ReadFile(filepath.Join(dir, "back", f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("%s changed over the reshard chain", f)
		}
	}
	ref, _ := model.New(cfg, 1, 1, gemm.New(1))
	ref.Init(3)
	got, _ := model.New(cfg, 1, 1, gemm.New(1))
	if err := LoadModel(filepath.Join(dir, "pp2"), got); err != nil {
		t.Fatal(err)
	}
	for i := range ref.Params.Data {
		if ref.Params.Data[i] != got.Params.Data[i] {
			t.Fatalf("element %d: %g after resharding, %g at init", i, got.Params.Data[i], ref.Params.Data[i])
		}
	}
	m1, v1 := make([]float32, got.Params.Count()), make([]float32, got.Params.Count())
	step, err := LoadMoments(filepath.Join(dir, "tp4pp2"), got, m1, v1)
	if err != nil || step != 9 {
		t.Fatalf("moments: step %d, %v", step, err)
	}
	for i, x := range ref.Params.Data {
		if m1[i] != 2*x || v1[i] != x*x {
			t.Fatalf("moment %d wrong after resharding", i)
		}
	}
	if err := Reshard(src, filepath.Join(dir, "bad"), 3, 1); err == nil {
		t.Fatal("tp 3 with 4 heads accepted")
	}
}

func TestShardedCorruptionIsRefusedNamingTheFile(t *testing.T) {
	cfg := model.Config{VocabSize: 64, NLayer: 2, NHead: 2, NEmbd: 16, NPositions: 8, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.02}
	run := t.TempDir()
	dir := filepath.Join(run, "checkpoints", "step_000009")
	writeShardedFixture(t, dir, cfg, 2, 1)
	if got, _, err := Resolve(run); err != nil || got != dir {
		t.Fatalf("Resolve = %q, %v", got, err)
	}
	path := filepath.Join(dir, "model-pp0-tp1.safetensors")
	raw, _ := os.ReadFile(path)
	raw[len(raw)-5] ^= 1
	os.WriteFile(path, raw, 0o644)
	_, warns, err := Resolve(run)
	if err == nil || len(warns) != 1 || !bytes.Contains([]byte(warns[0]), []byte("model-pp0-tp1.safetensors")) {
		t.Fatalf("bit flip: err %v, warnings %v", err, warns)
	}
}

// TestReshardRefusesWhatItCannotCarry: a checkpoint with a subdirectory
// Reshard does not know is refused, naming it, and nothing is written;
// ReshardWith carries it when told to, through Finish, before the commit.
func TestReshardRefusesWhatItCannotCarry(t *testing.T) {
	cfg := model.Config{VocabSize: 64, NLayer: 2, NHead: 2, NEmbd: 16, NPositions: 8, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.02}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeShardedFixture(t, src, cfg, 2, 1)
	if err := os.Mkdir(filepath.Join(src, "extra"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := Reshard(src, dst, 1, 2); err == nil || !bytes.Contains([]byte(err.Error()), []byte("extra/")) {
		t.Fatalf("reshard of a checkpoint with extra/: %v, want a refusal naming it", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("a refused reshard wrote its destination")
	}
	var sawTmp bool
	err := ReshardWith(src, dst, 1, 2, ReshardExtra{Subdirs: []string{"extra"}, Finish: func(tmp string) error {
		if _, err := os.Stat(filepath.Join(tmp, CommitFile)); err == nil {
			t.Error("Finish ran after the commit marker was written")
		}
		sawTmp = true
		return os.WriteFile(filepath.Join(tmp, "extra.json"), []byte("{}\n"), 0o644)
	}})
	if err != nil || !sawTmp {
		t.Fatalf("ReshardWith: %v (Finish ran: %v)", err, sawTmp)
	}
	if err := Verify(dst); err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := LoadTrainerState(dst, &st); err != nil || st["layout"] != ReshardedLayout(1, 2) {
		t.Fatalf("trainer state %v, %v: want the resharded layout", st, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dst, CommitFile))
	if !bytes.Contains(raw, []byte("extra.json")) {
		t.Errorf("commit.json does not cover the file Finish wrote:\n%s", raw)
	}
}
