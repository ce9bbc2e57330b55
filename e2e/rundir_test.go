package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
)

// TestRunDirectoryRules (issues 19.2, 20.1, 20.3) drives the binary: a
// second run into a run directory is refused unless --overwrite, which
// replaces the old checkpoints; the default --out of a new run is a fresh
// directory it prints; --resume over checkpoints none of which is usable
// fails naming each and changes nothing; and the safe defaults refuse what
// would waste a run (a fine-tuning without --ckpt, architecture flags
// beside --init-from, --lr 0, --stop-after past --steps, an output that
// cannot be written), each before the first step.
func TestRunDirectoryRules(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	writeGoldenText(t, text)
	run := filepath.Join(dir, "run")
	train := func(extra ...string) (int, string) {
		args := append([]string{"train", "--model", "tiny", "--data", text, "--batch", "4", "--seq", "32", "--threads", "1", "--no-progress"}, extra...)
		return strandExit(t, time.Minute, args...)
	}
	if code, out := train("--steps", "4", "--ckpt-every", "2", "--keep", "0", "--out", run); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	metrics, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if code, out := train("--steps", "2", "--out", run); code != 2 || !strings.Contains(out, "is not empty") || !strings.Contains(out, "--overwrite") {
		t.Fatalf("second run into the same --out: exit %d\n%s", code, out)
	}
	if now, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl")); string(now) != string(metrics) {
		t.Fatal("the refused run changed metrics.jsonl")
	}
	if code, out := train("--steps", "1", "--out", run, "--overwrite"); code != 0 {
		t.Fatalf("--overwrite: exit %d\n%s", code, out)
	}
	if steps, _ := checkpoint.Steps(run); len(steps) != 1 || steps[0].Step != 1 {
		t.Fatalf("after --overwrite the run holds checkpoints %+v, want only step 1", steps)
	}

	// the default --out: a fresh runs/train-DATE-TIME in the working directory
	cmd := exec.Command(strandBin, "train", "--model", "tiny", "--data", text, "--steps", "1", "--batch", "4", "--seq", "32", "--threads", "1", "--no-progress")
	cmd.Dir, cmd.Env = dir, cleanEnv()
	raw, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("default --out: %v\n%s", err, raw)
	}
	m := regexp.MustCompile(`run directory (runs/train-\d{8}-\d{6})`).FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatalf("no fresh run directory printed:\n%s", raw)
	}
	if _, err := os.Stat(filepath.Join(dir, m[1], "metrics.jsonl")); err != nil {
		t.Fatalf("the printed run directory: %v", err)
	}

	// every checkpoint damaged: --resume refuses and changes nothing
	for _, s := range []string{"step_000002", "step_000004"} {
		os.Remove(filepath.Join(run, "checkpoints", s, checkpoint.CommitFile))
	}
	os.RemoveAll(run)
	if code, out := train("--steps", "4", "--ckpt-every", "2", "--keep", "0", "--out", run); code != 0 {
		t.Fatalf("run to damage: exit %d\n%s", code, out)
	}
	for _, s := range []string{"step_000002", "step_000004"} {
		if err := os.WriteFile(filepath.Join(run, "checkpoints", s, checkpoint.ModelFile), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out := train("--steps", "6", "--out", run, "--resume")
	if code == 0 || !strings.Contains(out, "none of the 2 checkpoints") || !strings.Contains(out, "step_000002") || !strings.Contains(out, "step_000004") {
		t.Fatalf("--resume over damaged checkpoints: exit %d\n%s", code, out)
	}
	if steps, _ := checkpoint.Steps(run); len(steps) != 2 {
		t.Fatalf("the refused resume changed the checkpoints: %+v", steps)
	}

	// safe defaults, refused before any step
	pairs := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, pairs, 8)
	file := filepath.Join(dir, "a-file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dpo", "--data", pairs, "--out", filepath.Join(dir, "d")}, "--ckpt BASE is required"},
		{[]string{"train", "--init-from", run + "/checkpoints/step_000001", "--n-layer", "4", "--out", filepath.Join(dir, "i")}, "would be ignored"},
		{[]string{"train", "--lr", "0", "--out", filepath.Join(dir, "l")}, "--lr 0 would not change the model"},
		{[]string{"train", "--steps", "3", "--stop-after", "5", "--out", filepath.Join(dir, "s")}, "--stop-after 5 is beyond --steps 3"},
		{[]string{"train", "--model", "tiny", "--data", text, "--steps", "1", "--batch", "4", "--seq", "32", "--out", filepath.Join(file, "run")}, "run directory"},
	} {
		code, out := strandExit(t, time.Minute, c.args...)
		if code == 0 || !strings.Contains(out, c.want) || strings.Contains(out, " 1/") {
			t.Errorf("strand %s: exit %d, want a refusal naming %q before any step:\n%s", strings.Join(c.args, " "), code, c.want, out)
		}
	}

	// --stop-after says where it stopped
	code, out = train("--steps", "6", "--stop-after", "3", "--out", filepath.Join(dir, "stop"))
	if code != 0 || !strings.Contains(out, "done: step 3 of 6") || !strings.Contains(out, "stopped by --stop-after 3") {
		t.Fatalf("--stop-after 3 --steps 6: exit %d\n%s", code, out)
	}
}
