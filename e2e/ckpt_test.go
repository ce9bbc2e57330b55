package e2e

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strand-ml/strand/data"
)

var tinyArgs = []string{"--model", "tiny", "--batch", "8", "--microbatches", "2", "--max-data-bytes", "200000",
	"--no-progress", "--threads", "1", "--steps", "20", "--ckpt-every", "10"}

func lossesByStep(t *testing.T, run string) map[int]float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r struct {
			Step *int
			Loss *float64
		}
		json.Unmarshal([]byte(line), &r)
		if r.Step != nil && r.Loss != nil {
			out[*r.Step] = *r.Loss
		}
	}
	return out
}

// TestExactResume: 20 steps straight equal 10 + resume + 10 bit for bit in
// the same layout, and within 1e-4 when resumed into another layout.
func TestExactResume(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	dir := t.TempDir()
	straight := filepath.Join(dir, "straight")
	runStrand(t, 2*time.Minute, append([]string{"train", "--out", straight}, tinyArgs...)...)
	want := lossesByStep(t, straight)

	same := filepath.Join(dir, "same")
	runStrand(t, 2*time.Minute, append([]string{"train", "--out", same, "--stop-after", "10"}, tinyArgs...)...)
	runStrand(t, 2*time.Minute, append([]string{"train", "--out", same, "--resume"}, tinyArgs...)...)
	got := lossesByStep(t, same)
	for s := 1; s <= 20; s++ {
		if math.Float64bits(got[s]) != math.Float64bits(want[s]) {
			t.Fatalf("same layout, step %d: %v after resume, %v straight", s, got[s], want[s])
		}
	}

	cross := filepath.Join(dir, "cross")
	runStrand(t, 2*time.Minute, append([]string{"train", "--out", cross, "--stop-after", "10", "--nproc", "8", "--dp", "2", "--tp", "2", "--pp", "2"}, tinyArgs...)...)
	runStrand(t, 2*time.Minute, append([]string{"train", "--out", cross, "--resume", "--nproc", "2", "--tp", "2"}, tinyArgs...)...)
	got = lossesByStep(t, cross)
	for s := 1; s <= 20; s++ {
		if e := math.Abs(got[s]-want[s]) / want[s]; e > 1e-4 {
			t.Errorf("2x2x2 resumed as 1x2x1, step %d: %v vs %v (relative %.2g)", s, got[s], want[s], e)
		}
	}

	// The checkpoint written under 2x2x2 reshards through other layouts and
	// back without changing a bit.
	ck := filepath.Join(cross, "checkpoints", "step_000010")
	runStrand(t, time.Minute, "ckpt", "reshard", ck, "--out", filepath.Join(dir, "r111"))
	runStrand(t, time.Minute, "ckpt", "reshard", filepath.Join(dir, "r111"), "--tp", "2", "--out", filepath.Join(dir, "r121"))
	runStrand(t, time.Minute, "ckpt", "reshard", filepath.Join(dir, "r121"), "--pp", "2", "--out", filepath.Join(dir, "r112"))
	runStrand(t, time.Minute, "ckpt", "reshard", filepath.Join(dir, "r112"), "--out", filepath.Join(dir, "back"))
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		a, _ := os.ReadFile(filepath.Join(dir, "r111", f))
		b, _ := os.ReadFile(filepath.Join(dir, "back", f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("%s differs after (2,2,2) -> (1,1,1) -> (1,2,1) -> (1,1,2) -> (1,1,1)", f)
		}
	}
	out := runStrand(t, time.Minute, "ckpt", "inspect", filepath.Join(dir, "r121"))
	if !strings.Contains(out, "checksums ok") || !strings.Contains(out, "wte.weight") {
		t.Fatalf("inspect output:\n%s", out)
	}
}

// TestKilledWorkerRestarts: kill -9 of one worker of a 4-process job with
// --max-restarts 1; the job finishes every step and its final loss matches
// an uninterrupted run, losing at most one checkpoint interval.
func TestKilledWorkerRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	dir := t.TempDir()
	args := []string{"--model", "tiny", "--batch", "8", "--max-data-bytes", "200000", "--no-progress", "--threads", "1",
		"--steps", "60", "--ckpt-every", "10", "--nproc", "4", "--dp", "2", "--pp", "2", "--microbatches", "2"}
	clean := filepath.Join(dir, "clean")
	runStrand(t, 3*time.Minute, append([]string{"train", "--out", clean}, args...)...)
	want := lossesByStep(t, clean)

	run := filepath.Join(dir, "killed")
	j := start(t, nil, append([]string{"strand", "train", "--out", run, "--max-restarts", "1"}, args...)...)
	// wait until a checkpoint exists, then kill one worker
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(run, "checkpoints", "step_000010", "commit.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint after 2 minutes:\n%s", j.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	victim := childWithRank(t, j.cmd.Process.Pid, 3)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := j.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("job exit %d:\n%s", code, j.out.String())
	}
	out := j.out.String()
	if !strings.Contains(out, "restart 1 of 1") || !strings.Contains(out, "rank 3") {
		t.Fatalf("no restart naming rank 3 in output:\n%s", out)
	}
	got := lossesByStep(t, run)
	if e := math.Abs(got[60]-want[60]) / want[60]; e > 1e-4 {
		t.Fatalf("final loss %v, uninterrupted %v (relative %.2g)", got[60], want[60], e)
	}
	raw, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	var ev struct {
		Event           string
		ResumedFromStep int `json:"resumed_from_step"`
		LostSteps       int `json:"lost_steps"`
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, `"event":"resume"`) {
			json.Unmarshal([]byte(line), &ev)
		}
	}
	if ev.Event != "resume" || ev.ResumedFromStep < 10 || ev.LostSteps > 10 {
		t.Fatalf("restart record %+v: want a resume from a checkpoint losing at most one interval", ev)
	}
}

// TestExportLoadsInPyTorch: `strand ckpt export --format hf-gpt2` writes a
// model PyTorch reads and evaluates to strand's loss.
func TestExportLoadsInPyTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("python3-torch is not installed")
	}
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	runStrand(t, 2*time.Minute, "train", "--model", "tiny", "--steps", "5", "--batch", "4", "--max-data-bytes", "100000", "--out", run, "--no-progress", "--nproc", "2", "--tp", "2")
	hf := filepath.Join(dir, "hf")
	runStrand(t, time.Minute, "ckpt", "export", run, "--format", "hf-gpt2", "--out", hf)
	toks := make([]uint16, 2*4*64+1)
	for i := range toks {
		toks[i] = uint16((i*31 + 7) % 256)
	}
	shard := filepath.Join(dir, "eval.bin")
	if err := data.WriteShard(shard, toks); err != nil {
		t.Fatal(err)
	}
	out := runStrand(t, time.Minute, "eval", "--ckpt", run, "--data", shard, "--batch", "4", "--seq", "64", "--steps", "2")
	var ours struct{ Loss float64 }
	out = strings.TrimSpace(out)
	json.Unmarshal([]byte(out[strings.LastIndex(out, "\n")+1:]), &ours) // after eval's progress lines
	script := filepath.Join("..", "checkpoint", "testdata", "hf_loss.py")
	raw, err := exec.Command(py, script, hf, shard, "4", "64", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, raw)
	}
	var theirs struct{ Loss float64 }
	if err := json.Unmarshal(bytes.TrimSpace(raw), &theirs); err != nil {
		t.Fatalf("python output %q", raw)
	}
	if e := math.Abs(ours.Loss-theirs.Loss) / theirs.Loss; e > 1e-5 || ours.Loss == 0 {
		t.Fatalf("strand eval %.7f, PyTorch on the export %.7f (relative %.2g)", ours.Loss, theirs.Loss, e)
	}
}
