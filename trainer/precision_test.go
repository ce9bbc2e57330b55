package trainer

import (
	"context"
	"math"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/internal/alloctest"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/optim"
	dpdata "github.com/strand-ml/strand/parallel/data"
)

// singleRun trains opts in one process and returns every step's stats.
func singleRun(t *testing.T, opts Options) []StepStats {
	t.Helper()
	loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(opts, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var out []StepStats
	for tr.Step < opts.Steps {
		st, err := tr.TrainStep(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st)
	}
	return out
}

// TestBF16LossFollowsFloat32: over a short run the bf16 loss curve stays
// within 1% of float32's at every step, and the runs are not identical
// (bf16 really ran).
func TestBF16LossFollowsFloat32(t *testing.T) {
	opts := testOptions()
	opts.Steps = 30
	want := singleRun(t, opts)
	opts.Precision = "bf16"
	got := singleRun(t, opts)
	same := true
	for i := range want {
		if e := math.Abs(got[i].Loss-want[i].Loss) / want[i].Loss; e > 0.01 {
			t.Errorf("step %d: bf16 loss %.5f vs float32 %.5f (%.2f%%)", i+1, got[i].Loss, want[i].Loss, 100*e)
		}
		same = same && got[i].Loss == want[i].Loss
	}
	if same {
		t.Fatal("bf16 losses equal float32's to the bit: bf16 products did not run")
	}
	if want[len(want)-1].Loss > 0.9*want[0].Loss {
		t.Fatalf("float32 loss %.4f -> %.4f: the run does not learn, so the comparison means little", want[0].Loss, want[len(want)-1].Loss)
	}
}

// TestFP16LossScaling starts from a loss scale so large that the fp16
// gradients overflow: the first steps must be skipped (parameters
// unchanged) with the scale halving each time, then training proceeds,
// the scale grows after Interval good steps, and the loss ends close to
// float32's.
func TestFP16LossScaling(t *testing.T) {
	opts := testOptions()
	opts.Steps = 24
	opts.MinLRFrac = 1 // constant LR: skipped steps then only delay the same updates
	want := singleRun(t, opts)
	opts.Precision = "fp16"
	const start = 30 // log2 of the first scale
	opts.LossScale = &optim.LossScaler{Scale: 1 << start, Growth: 2, Backoff: 0.5, Interval: 5}
	got := singleRun(t, opts)
	skipped := 0
	for skipped < len(got) && got[skipped].Skipped {
		if want := math.Ldexp(1, start-1-skipped); got[skipped].LossScale != want {
			t.Fatalf("skipped step %d: loss scale %g, want %g", skipped+1, got[skipped].LossScale, want)
		}
		skipped++
	}
	if skipped == 0 || skipped > 15 {
		t.Fatalf("%d leading skipped steps at scale 2^30, want some", skipped)
	}
	for i := 1; i < skipped; i++ {
		if got[i].Loss != got[0].Loss {
			t.Fatalf("step %d loss %.6f differs from step 1's %.6f although every step so far was skipped", i+1, got[i].Loss, got[0].Loss)
		}
	}
	grew := false
	for _, st := range got[skipped:] {
		grew = grew || st.LossScale > got[skipped].LossScale
	}
	if !grew {
		t.Fatalf("loss scale never grew after %d good steps (interval 5): %+v", len(got)-skipped, got[len(got)-1])
	}
	// fp16 lost the skipped steps (the leading ones, and any later
	// overflow after a growth): compare its last loss with float32's at the
	// same number of applied updates.
	lost := 0
	for _, st := range got[:len(got)-1] {
		if st.Skipped {
			lost++
		}
	}
	last, ref := got[len(got)-1].Loss, want[len(got)-1-lost].Loss
	if e := math.Abs(last-ref) / ref; e > 0.005 {
		t.Fatalf("fp16 final loss %.5f vs float32 %.5f after the same updates (%.2f%%)", last, ref, 100*e)
	}
	t.Logf("%d skipped steps (%d leading); fp16 loss %.5f vs float32 %.5f after %d updates; final scale %g", lost, skipped, last, ref, len(got)-1-lost, got[len(got)-1].LossScale)
}

// TestBF16StepAllocatesNothing: bf16 keeps the step allocation-free.
func TestBF16StepAllocatesNothing(t *testing.T) {
	opts := testOptions()
	opts.Precision, opts.Threads, opts.Steps = "bf16", 2, 100
	loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(opts, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	allocs, stepErr := stepAllocs(context.Background(), tr)
	if stepErr != nil {
		t.Fatal(stepErr)
	}
	if allocs >= alloctest.Tolerance {
		t.Fatalf("%.2f allocations per bf16 training step, want 0", allocs)
	}
}

func TestPrecisionValidation(t *testing.T) {
	opts := testOptions()
	opts.Precision = "fp8"
	if err := opts.Validate(mesh.Mesh{DP: 1, TP: 1, PP: 1}); err == nil {
		t.Fatal("precision fp8 accepted")
	}
	opts.Precision = "fp16"
	opts.LossScale = &optim.LossScaler{Scale: 1, Growth: 0.5, Backoff: 0.5, Interval: 1}
	if err := opts.Validate(mesh.Mesh{DP: 1, TP: 1, PP: 1}); err == nil {
		t.Fatal("loss scale growth 0.5 accepted")
	}
}

// TestFP8GradientsStayClose: data-parallel x2 with fp8 (E4M3) gradient
// buckets follows the single-process float32 losses within 2% per step.
func TestFP8GradientsStayClose(t *testing.T) {
	opts := testOptions()
	want, _ := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	opts.DP = dpdata.Options{FP8: "e4m3", BucketBytes: 8192}
	got, _ := runMesh(t, opts, mesh.Mesh{DP: 2, TP: 1, PP: 1})
	same := true
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 2e-2 {
			t.Errorf("fp8 gradients, step %d: loss %.5f vs %.5f", i+1, got[i], want[i])
		}
		same = same && got[i] == want[i]
	}
	if same && len(want) > 1 {
		t.Fatal("fp8 run identical to float32: compression did not run")
	}
}
