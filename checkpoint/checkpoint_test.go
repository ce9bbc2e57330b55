package checkpoint

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
)

func tinyModel(t *testing.T, seed uint64) *model.GPT {
	t.Helper()
	cfg, _ := model.Preset("tiny")
	m, err := model.New(cfg, 1, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	return m
}

type state struct {
	Step int    `json:"step"`
	Note string `json:"note"`
}

func TestSaveLoadRoundTrip(t *testing.T) {
	run := t.TempDir()
	m := tinyModel(t, 1)
	opt, _ := optim.NewAdamW(optim.DefaultAdamW(), m.Params.Count(), []optim.Segment{{Offset: 0, Size: m.Params.Count(), Decay: true}})
	for i := range opt.M {
		opt.M[i], opt.V[i] = float32(i)*1e-3, float32(i)*1e-6
	}
	opt.Step = 7
	dir, err := Save(run, 7, m, opt, state{7, "x"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, warn, err := Resolve(run)
	if err != nil || got != dir || len(warn) != 0 {
		t.Fatalf("Resolve(run) = %q %v %v, want %q", got, warn, err, dir)
	}
	cfg, err := ReadConfig(dir)
	if err != nil || cfg != m.Config {
		t.Fatalf("config %+v %v", cfg, err)
	}
	m2 := tinyModel(t, 2)
	if err := LoadModel(dir, m2); err != nil {
		t.Fatal(err)
	}
	for i := range m.Params.Data {
		if m.Params.Data[i] != m2.Params.Data[i] {
			t.Fatalf("parameter element %d differs after load", i)
		}
	}
	opt2, _ := optim.NewAdamW(optim.DefaultAdamW(), m.Params.Count(), []optim.Segment{{Offset: 0, Size: m.Params.Count(), Decay: true}})
	if err := LoadOptimizer(dir, m2, opt2); err != nil {
		t.Fatal(err)
	}
	if opt2.Step != 7 || opt2.M[100] != opt.M[100] || opt2.V[100] != opt.V[100] {
		t.Fatal("optimizer state differs after load")
	}
	var s state
	if err := LoadTrainerState(dir, &s); err != nil || s != (state{7, "x"}) {
		t.Fatalf("trainer state %+v %v", s, err)
	}
}

func TestCorruptLatestFallsBackToPrevious(t *testing.T) {
	run := t.TempDir()
	m := tinyModel(t, 1)
	first, err := Save(run, 10, m, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Save(run, 20, m, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// flip one bit in the newest model file
	path := filepath.Join(second, ModelFile)
	raw, _ := os.ReadFile(path)
	raw[len(raw)/2] ^= 0x10
	os.WriteFile(path, raw, 0o644)
	got, warn, err := Resolve(run)
	if err != nil || got != first {
		t.Fatalf("Resolve = %q, %v; want %q", got, err, first)
	}
	if len(warn) != 1 || !strings.Contains(warn[0], "model.safetensors") {
		t.Fatalf("warnings %v should name the corrupted file", warn)
	}
	if err := Verify(second); err == nil || !strings.Contains(err.Error(), ModelFile) {
		t.Fatalf("Verify(corrupt) = %v", err)
	}
}

func TestTruncatedAndUncommittedAreRefused(t *testing.T) {
	run := t.TempDir()
	m := tinyModel(t, 1)
	dir, err := Save(run, 5, m, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ModelFile)
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, raw[:len(raw)-100], 0o644)
	if _, _, err := Resolve(dir); err == nil || !strings.Contains(err.Error(), ModelFile) {
		t.Fatalf("truncated checkpoint: %v", err)
	}
	os.Remove(filepath.Join(dir, CommitFile))
	if _, _, err := Resolve(run); err == nil {
		t.Fatal("run whose only checkpoint has no commit marker resolved")
	}
	// Without commit.json, the checksum is gone but the safetensors reader
	// still refuses the truncated file, naming it.
	if err := LoadModel(dir, m); err == nil || !strings.Contains(err.Error(), ModelFile) {
		t.Fatalf("LoadModel(truncated) = %v", err)
	}
}

func TestRotationKeepsNewest(t *testing.T) {
	run := t.TempDir()
	m := tinyModel(t, 1)
	for _, s := range []int{1, 2, 3, 4} {
		if _, err := Save(run, s, m, nil, nil, 2); err != nil {
			t.Fatal(err)
		}
	}
	steps, _ := committedSteps(filepath.Join(run, "checkpoints"))
	if len(steps) != 2 || steps[0].step != 3 || steps[1].step != 4 {
		t.Fatalf("kept %v", steps)
	}
	entries, _ := os.ReadDir(filepath.Join(run, "checkpoints"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Fatalf("temporary directory %s left behind", e.Name())
		}
	}
}

func TestLoadsPyTorchWrittenCheckpointAndNamesBadTensor(t *testing.T) {
	dir := filepath.Join("..", "model", "testdata", "torch_gelu_new")
	got, _, err := Resolve(dir)
	if err != nil || got != dir {
		t.Fatalf("Resolve(HF dir) = %q %v", got, err)
	}
	cfg, err := ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, 1, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := LoadModel(dir, m); err != nil {
		t.Fatal(err)
	}
	// a model with another width must be refused with the tensor named
	cfg.NEmbd = 64
	m2, _ := model.New(cfg, 1, 8, gemm.New(1))
	err = LoadModel(dir, m2)
	if err == nil || !strings.Contains(err.Error(), "shape") || !strings.Contains(err.Error(), "\"") {
		t.Fatalf("mismatched width: %v", err)
	}
}

// TestFullDiskLeavesPreviousCheckpoint saves onto a small tmpfs until the
// disk is full: the failed save leaves no step directory and the previous
// checkpoint still resolves and verifies.
func TestFullDiskLeavesPreviousCheckpoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	run := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", run).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", run).Run()
	m := tinyModel(t, 1)
	first, err := Save(run, 1, m, nil, nil, 0) // about 1.8 MB
	if err != nil {
		t.Fatal(err)
	}
	// leave less room than one more checkpoint needs
	filler, _ := os.Create(filepath.Join(run, "filler"))
	buf := make([]byte, 1<<20)
	for i := 0; i < 5; i++ {
		filler.Write(buf)
	}
	filler.Close()
	if _, err := Save(run, 2, m, nil, nil, 0); err == nil {
		t.Fatal("save on a full disk succeeded")
	}
	got, _, err := Resolve(run)
	if err != nil || got != first {
		t.Fatalf("after the failed save Resolve = %q, %v; want %q", got, err, first)
	}
	entries, _ := os.ReadDir(filepath.Join(run, "checkpoints"))
	for _, e := range entries {
		if e.Name() != filepath.Base(first) {
			t.Errorf("failed save left %s behind", e.Name())
		}
	}
}
