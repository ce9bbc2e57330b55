package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// evalFlags are strand eval's flags.
type evalFlags struct {
	ckpt, dataSpec, tokDir string
	batch, seq, steps      int
	threads, bucket        int
	byPos                  bool
	valFrac                float64
	valFracSet             bool
	scaling                ropeScalingFlags
}

func (f *evalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.ckpt, "ckpt", "", "checkpoint directory or run directory (its latest checkpoint); LoRA adapters load onto their base")
	fs.StringVar(&f.dataSpec, "data", "", "evaluation data (llm.c shard, text file, directory or glob) (default: the held-out split the checkpoint's run used)")
	fs.StringVar(&f.tokDir, "tokenizer", "", "BPE tokenizer directory for text data (default: the checkpoint's own, else bytes; a different one is refused)")
	fs.IntVar(&f.batch, "batch", 8, "sequences per batch")
	fs.IntVar(&f.seq, "seq", 0, "tokens per sequence (default: the model's positions)")
	fs.IntVar(&f.steps, "steps", 0, "batches to evaluate (default: all full batches in the data)")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines (default: all cores)")
	fs.BoolVar(&f.byPos, "by-position", false, "also report the loss per position bucket (long-context behaviour of rope/alibi)")
	fs.IntVar(&f.bucket, "bucket", 0, "--by-position bucket width in positions (default: n_positions/2)")
	fs.Float64Var(&f.valFrac, "val-frac", 0, "evaluate only the held-out tail of the data, as strand train --val-frac splits it (default without --data: the run's)")
	f.scaling.register(fs)
}

// runEval prints the mean cross-entropy of a checkpoint over batches read
// sequentially from the start of the evaluation data: --data, or by
// default the held-out split of the data the checkpoint's run trained on
// (recorded in its trainer_state.json, see dataRecord).
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", stderr)
	var f evalFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fs.Visit(func(fl *flag.Flag) {
		f.valFracSet = f.valFracSet || fl.Name == "val-frac"
	})
	if err := f.check(); err != nil {
		return err
	}
	dir, cfg, err := checkpointConfig(f.ckpt, &f.scaling, stderr)
	if err != nil {
		return err
	}
	T, err := f.seqLen(cfg)
	if err != nil {
		return err
	}
	corpus, err := f.evalData(ctx, dir, cfg, stderr)
	if err != nil {
		return err
	}
	n, loader, err := f.batches(corpus, T)
	if err != nil {
		return err
	}
	m, err := model.New(cfg, f.batch, T, gemm.New(f.threads))
	if err != nil {
		return err
	}
	if err := finetune.LoadWeights(dir, m); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "evaluating %s on %d batches of %dx%d from %s\n", dir, n, f.batch, T, corpus.Source)
	result := map[string]any{"checkpoint": dir, "data": corpus.Source, "batches": n, "seq": T, "n_positions": cfg.NPositions, "position": cfg.Position}
	if cfg.RopeScaling != nil {
		result["rope_scaling"] = cfg.RopeScaling
	}
	if err := f.evaluate(ctx, m, loader, T, n, cfg, result, stderr); err != nil {
		return err
	}
	out, _ := json.Marshal(result)
	_, err = fmt.Fprintln(stdout, string(out))
	return err
}

func (f *evalFlags) check() error {
	switch {
	case f.ckpt == "":
		return usageError{"--ckpt is required"}
	case f.batch <= 0:
		return usageError{fmt.Sprintf("--batch %d must be positive", f.batch)}
	case f.valFrac < 0 || f.valFrac >= 1:
		return usageError{fmt.Sprintf("--val-frac %g outside [0, 1)", f.valFrac)}
	case f.bucket < 0:
		return usageError{fmt.Sprintf("--bucket %d must be positive", f.bucket)}
	}
	return nil
}

// seqLen is --seq, or the model's positions.
func (f *evalFlags) seqLen(cfg model.Config) (int, error) {
	T := f.seq
	if T == 0 {
		T = cfg.NPositions
	}
	if T <= 0 || (cfg.Position == model.PosLearned && T > cfg.NPositions) {
		return 0, usageError{fmt.Sprintf("--seq %d: the model has %d learned positions and cannot run past them", T, cfg.NPositions)}
	}
	return T, nil
}

// evalData loads --data (its --val-frac tail), or without --data the
// held-out split the checkpoint's run recorded.
func (f *evalFlags) evalData(ctx context.Context, dir string, cfg model.Config, stderr io.Writer) (*data.Corpus, error) {
	spec, opts, valFrac := f.dataSpec, data.LoadOptions{}, f.valFrac
	if spec == "" {
		rec, ok, err := readDataRecord(dir)
		if err != nil {
			return nil, err
		}
		switch {
		case !ok && f.valFracSet:
			// as before the record: the default corpus (the Go sources)
			fmt.Fprintf(stderr, "no --data and %s records no data: evaluating the last %g of the default corpus\n", dir, valFrac)
			rec = dataRecord{ValFrac: valFrac}
		case !ok:
			return nil, usageError{fmt.Sprintf("--data is required: %s does not record the data its run trained on (a fine-tuning checkpoint, an exported or Hugging Face model, or one written before strand recorded it)", dir)}
		}
		if !(rec.ValFrac > 0) && !f.valFracSet {
			return nil, usageError{fmt.Sprintf("--data is required: the run of %s held out no data (--val-frac 0); --val-frac F evaluates the last F of its data", dir)}
		}
		spec, opts.MaxBytes = rec.Spec, rec.MaxBytes
		if !f.valFracSet { // --val-frac picks another tail of the same data
			valFrac = rec.ValFrac
		}
		if ok {
			fmt.Fprintf(stderr, "no --data: evaluating the held-out %g of the run's data %s\n", valFrac, describeData(spec))
		}
	}
	tok, err := loadTokenizer(f.tokDir, dir)
	if err != nil {
		return nil, err
	}
	corpus, err := data.Load(ctx, spec, tok, opts)
	if err != nil {
		return nil, err
	}
	if corpus.Mixed() {
		fmt.Fprintf(stderr, "data: %s\n", corpus.FileSummary())
	}
	if err := corpus.CheckVocab(cfg.VocabSize); err != nil {
		return nil, err
	}
	if valFrac > 0 {
		_, corpus = corpus.Split(valFrac)
	}
	return corpus, nil
}

// batches is the number of batches to evaluate and their loader.
func (f *evalFlags) batches(corpus *data.Corpus, T int) (int, *data.Loader, error) {
	n := f.steps
	available := (len(corpus.Tokens) - 1) / (f.batch * T)
	if n == 0 {
		n = available
	}
	if n <= 0 || n > available {
		return 0, nil, fmt.Errorf("data has %d tokens: room for %d batches of %dx%d, asked for %d", len(corpus.Tokens), available, f.batch, T, n)
	}
	loader, err := data.NewLoader(corpus.Tokens, data.LoaderConfig{Batch: f.batch, Seq: T, DPSize: 1})
	return n, loader, err
}

// evaluate runs the n batches and adds loss, perplexity and tokens (and
// with --by-position the buckets, also printed as a table) to result.
func (f *evalFlags) evaluate(ctx context.Context, m *model.GPT, loader *data.Loader, T, n int, cfg model.Config, result map[string]any, stderr io.Writer) error {
	width := 0
	if f.byPos {
		width = f.bucket
		if width == 0 {
			width = max(1, cfg.NPositions/2)
		}
	}
	loss, count, buckets, err := evalBatches(ctx, m, loader, f.batch, T, n, width, evalProgress(stderr, n))
	if err != nil {
		return err
	}
	result["loss"], result["perplexity"], result["tokens"] = loss, math.Exp(loss), count
	if !f.byPos {
		return nil
	}
	result["by_position"] = buckets
	fmt.Fprintf(stderr, "%-13s %8s %8s %9s\n", "positions", "x train", "loss", "tokens")
	for _, b := range buckets {
		fmt.Fprintf(stderr, "%5d..%-6d %8.2f %8.4f %9d\n", b.From, b.To, float64(b.To)/float64(cfg.NPositions), b.Loss, b.Tokens)
	}
	return nil
}

// evalProgress prints a line after the first batch (with an estimate of
// the time left), then every few seconds, and the last batch: a long
// evaluation shows it is alive.
func evalProgress(w io.Writer, n int) func(done int, loss float64) {
	start, last, printed := time.Now(), time.Now(), false
	return func(done int, loss float64) {
		now := time.Now()
		if done > 1 && now.Sub(last) < 5*time.Second && !(done == n && printed) {
			return
		}
		last, printed = now, true
		el := now.Sub(start)
		eta := time.Duration(float64(el) / float64(done) * float64(n-done))
		fmt.Fprintf(w, "eval %d/%d batches, loss so far %.4f, %s elapsed, about %s left\n", done, n, loss, el.Round(time.Second), eta.Round(time.Second))
	}
}

// positionBucket is the mean loss of positions [From, To) of each sequence.
type positionBucket struct {
	From   int     `json:"from"`
	To     int     `json:"to"`
	Loss   float64 `json:"loss"`
	Tokens int     `json:"tokens"`
}

// evalBatches is the mean loss over steps batches, summed batch by batch
// in order as trainer.Evaluate does; with width > 0 the per-position
// losses are also kept (position t of every sequence goes to bucket
// t/width) and the mean is their sum. report (may be nil) is called
// after each batch with the running mean.
func evalBatches(ctx context.Context, m *model.GPT, loader *data.Loader, B, T, steps, width int, report func(done int, loss float64)) (float64, int, []positionBucket, error) {
	in, tg := make([]int32, B*T), make([]int32, B*T)
	var sums []float64
	var counts []int
	if width > 0 {
		nb := (T + width - 1) / width
		sums, counts = make([]float64, nb), make([]int, nb)
	}
	var sum float64
	var count int
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return 0, 0, nil, err
		}
		if err := loader.Next(in, tg); err != nil {
			return 0, 0, nil, fmt.Errorf("eval batch %d: %w", i, err)
		}
		s, c, err := m.Forward(in, tg, B, T)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("eval batch %d: %w", i, err)
		}
		if width == 0 {
			sum, count = sum+s, count+c
		} else {
			sum, count = addPositions(m.Losses(), tg, T, width, sums, counts, sum, count)
		}
		if report != nil && count > 0 {
			report(i+1, sum/float64(count))
		}
	}
	if count == 0 {
		return 0, 0, nil, fmt.Errorf("eval: no positions counted")
	}
	return sum / float64(count), count, buckets(sums, counts, T, width), nil
}

// addPositions adds one batch's per-position losses to the buckets and
// the running sum.
func addPositions(losses []float32, tg []int32, T, width int, sums []float64, counts []int, sum float64, count int) (float64, int) {
	for n, l := range losses {
		if tg[n] == model.IgnoreIndex {
			continue
		}
		b := (n % T) / width
		sums[b] += float64(l)
		counts[b]++
		sum += float64(l)
		count++
	}
	return sum, count
}

func buckets(sums []float64, counts []int, T, width int) []positionBucket {
	if width == 0 {
		return nil
	}
	out := make([]positionBucket, len(sums))
	for b := range out {
		out[b] = positionBucket{From: b * width, To: min(T, (b+1)*width), Tokens: counts[b]}
		if counts[b] > 0 {
			out[b].Loss = sums[b] / float64(counts[b])
		}
	}
	return out
}
