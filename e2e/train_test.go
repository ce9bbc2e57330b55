package e2e

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// readLosses returns the per-step losses of a run directory's metrics.jsonl.
func readLosses(t *testing.T, run string) []float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r struct {
			Step  int
			Loss  float64
			Event string // the run's events (resume, the closing summary) are not steps
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if r.Event == "" {
			out = append(out, r.Loss)
		}
	}
	return out
}

func runStrand(t *testing.T, d time.Duration, args ...string) string {
	t.Helper()
	j := start(t, nil, append([]string{"strand"}, args...)...)
	if code := j.wait(t, d); code != 0 {
		t.Fatalf("strand %s: exit %d\n%s", strings.Join(args, " "), code, j.out.String())
	}
	return j.out.String()
}

// TestTrainTinyOnDefaultData is the single-process acceptance run: 200
// steps of `tiny` on the Go source tree bring the loss well below
// ln(vocab), and the run directory feeds eval and --init-from.
func TestTrainTinyOnDefaultData(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	runStrand(t, 5*time.Minute, "train", "--model", "tiny", "--steps", "200", "--out", run, "--no-progress")
	losses := readLosses(t, run)
	if len(losses) != 200 {
		t.Fatalf("%d metric lines, want 200", len(losses))
	}
	var last float64
	for _, l := range losses[190:] {
		last += l / 10
	}
	if lnV := math.Log(256); last > lnV-1.5 {
		t.Fatalf("mean loss of the last 10 steps %.3f, not well below ln(256) = %.3f", last, lnV)
	}
	for _, f := range []string{"loss.png", "checkpoints/step_000200/commit.json"} {
		if _, err := os.Stat(filepath.Join(run, f)); err != nil {
			t.Fatal(err)
		}
	}
	held := filepath.Join(runtime.GOROOT(), "src", "fmt", "print.go")
	out := runStrand(t, time.Minute, "eval", "--ckpt", run, "--data", held, "--batch", "4")
	var ev struct{ Loss, Perplexity float64 }
	out = strings.TrimSpace(out)
	out = out[strings.LastIndex(out, "\n")+1:] // the JSON line, after eval's progress
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.Loss <= 0 || ev.Loss > math.Log(256) {
		t.Fatalf("eval output %q (%v)", out, err)
	}
	runStrand(t, time.Minute, "train", "--init-from", run, "--steps", "2", "--out", filepath.Join(t.TempDir(), "again"), "--no-progress")
}

// layoutRun trains tiny for 20 steps under a mesh and returns its losses,
// then its final validation loss (evaluated on the mesh).
func layoutRun(t *testing.T, dir string, dp, tp, pp int, extra ...string) []float64 {
	t.Helper()
	n := dp * tp * pp
	run := filepath.Join(dir, strings.Join(append([]string{itoa(dp), itoa(tp), itoa(pp)}, extra...), "_"))
	args := []string{"train", "--model", "tiny", "--steps", "20", "--batch", "8", "--microbatches", "2",
		"--max-data-bytes", "200000", "--out", run, "--no-progress", "--threads", "1",
		"--nproc", itoa(n), "--dp", itoa(dp), "--tp", itoa(tp), "--pp", itoa(pp)}
	runStrand(t, 3*time.Minute, append(args, extra...)...)
	val, ok := lastRecord(t, run, "val_loss")["val_loss"].(float64)
	if !ok {
		t.Fatalf("%s: no validation loss", run)
	}
	return append(readLosses(t, run), val)
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestLayoutInvariance: every DP x TP x PP layout reproduces the single
// process's per-step losses and validation loss within 1e-4, and reruns
// are bit-identical.
func TestLayoutInvariance(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	dir := t.TempDir()
	want := layoutRun(t, dir, 1, 1, 1)
	check := func(name string, got []float64) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d steps, want %d", name, len(got), len(want))
		}
		for i := range want {
			if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
				t.Errorf("%s step %d: loss %.7f, single process %.7f (relative %.2g)", name, i+1, got[i], want[i], e)
			}
		}
	}
	for _, l := range [][3]int{{2, 1, 1}, {1, 2, 1}, {1, 1, 2}, {2, 2, 1}, {1, 2, 2}, {2, 2, 2}} {
		check(itoa(l[0])+"x"+itoa(l[1])+"x"+itoa(l[2]), layoutRun(t, dir, l[0], l[1], l[2]))
	}
	check("2x2x2 zero1", layoutRun(t, dir, 2, 2, 2, "--zero1"))
	// final parameters: each run's last checkpoint, loaded into one process
	ref := finalParams(t, filepath.Join(dir, "1_1_1"))
	for _, run := range []string{"2_1_1", "1_2_1", "1_1_2", "2_2_1", "1_2_2", "2_2_2", "2_2_2_--zero1"} {
		got := finalParams(t, filepath.Join(dir, run))
		var num, den float64
		for i := range ref {
			d := float64(got[i] - ref[i])
			num += d * d
			den += float64(ref[i]) * float64(ref[i])
		}
		if e := math.Sqrt(num / den); e > 1e-4 {
			t.Errorf("%s: final parameters differ from the single process by relative L2 %.2g", run, e)
		}
	}
	check("1x1x2 gpipe", layoutRun(t, dir, 1, 1, 2, "--schedule", "gpipe"))
	a := layoutRun(t, filepath.Join(dir, "again"), 2, 2, 2)
	b := layoutRun(t, filepath.Join(dir, "again2"), 2, 2, 2)
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			t.Fatalf("two runs of 2x2x2 differ at step %d: %v vs %v", i+1, a[i], b[i])
		}
	}
}

// finalParams loads a run's newest checkpoint (any layout) into a
// single-process model and returns its parameters.
func finalParams(t *testing.T, run string) []float32 {
	t.Helper()
	dir, _, err := checkpoint.Resolve(run)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := checkpoint.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, 1, 1, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.LoadModel(dir, m); err != nil {
		t.Fatal(err)
	}
	return m.Params.Data
}

// TestBadMeshFailsBeforeWorkersStart: layout errors are reported by the
// launcher itself, with no worker output.
func TestBadMeshFailsBeforeWorkersStart(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--nproc", "3", "--tp", "2"}, "does not divide world size 3"},
		{[]string{"--nproc", "3", "--tp", "3"}, "attention heads"},
		{[]string{"--nproc", "3", "--pp", "3"}, "3 pipeline stages for 2 layers"},
	}
	for _, c := range cases {
		j := start(t, nil, append([]string{"strand", "train", "--model", "tiny", "--steps", "1"}, c.args...)...)
		code := j.wait(t, 30*time.Second)
		out := j.out.String()
		if code == 0 || !strings.Contains(out, c.want) || strings.Contains(out, "[rank") {
			t.Errorf("%v: exit %d, output %q, want an error containing %q before any worker", c.args, code, out, c.want)
		}
	}
}

// TestInterleavedLayoutInvariance: separate processes running interleaved
// 1F1B with two model chunks per stage (pp2, with DP) reproduce the single
// process's losses, validation loss and final parameters within 1e-4.
func TestInterleavedLayoutInvariance(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	dir := t.TempDir()
	want := layoutRun(t, dir, 1, 1, 1, "--n-layer", "4")
	got := layoutRun(t, dir, 2, 1, 2, "--n-layer", "4", "--schedule", "interleaved", "--virtual-stages", "2")
	if len(got) != len(want) {
		t.Fatalf("%d steps, want %d", len(got), len(want))
	}
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
			t.Errorf("step %d: loss %.7f, single process %.7f (relative %.2g)", i+1, got[i], want[i], e)
		}
	}
	ref := finalParams(t, filepath.Join(dir, "1_1_1_--n-layer_4"))
	fin := finalParams(t, filepath.Join(dir, "2_1_2_--n-layer_4_--schedule_interleaved_--virtual-stages_2"))
	var num, den float64
	for i := range ref {
		d := float64(fin[i] - ref[i])
		num += d * d
		den += float64(ref[i]) * float64(ref[i])
	}
	if e := math.Sqrt(num / den); e > 1e-4 {
		t.Errorf("final parameters differ from the single process by relative L2 %.2g", e)
	}
}
