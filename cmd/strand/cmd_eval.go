package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/trainer"
)

// runEval prints the mean cross-entropy of a checkpoint over batches read
// sequentially from the start of a data file.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", stderr)
	ckpt := fs.String("ckpt", "", "checkpoint directory or run directory (its latest checkpoint)")
	dataSpec := fs.String("data", "", "evaluation data (llm.c shard, text file, directory or glob)")
	tokDir := fs.String("tokenizer", "", "BPE tokenizer directory for text data (default: bytes)")
	batch := fs.Int("batch", 8, "sequences per batch")
	seq := fs.Int("seq", 0, "tokens per sequence (default: the model's positions)")
	steps := fs.Int("steps", 0, "batches to evaluate (default: all full batches in the data)")
	threads := fs.Int("threads", 0, "compute goroutines (default: all cores)")
	byPos := fs.Bool("by-position", false, "also report the loss per position bucket (long-context behaviour of rope/alibi)")
	bucket := fs.Int("bucket", 0, "--by-position bucket width in positions (default: n_positions/2)")
	valFrac := fs.Float64("val-frac", 0, "evaluate only the held-out tail of the data, as strand train --val-frac splits it")
	var scaling ropeScalingFlags
	scaling.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" {
		return usageError{"--ckpt is required"}
	}
	if *batch <= 0 {
		return usageError{fmt.Sprintf("--batch %d must be positive", *batch)}
	}
	dir, cfg, err := checkpointConfig(*ckpt, &scaling, stderr)
	if err != nil {
		return err
	}
	if *valFrac < 0 || *valFrac >= 1 {
		return usageError{fmt.Sprintf("--val-frac %g outside [0, 1)", *valFrac)}
	}
	T := *seq
	if T == 0 {
		T = cfg.NPositions
	}
	if T <= 0 || (cfg.Position == model.PosLearned && T > cfg.NPositions) {
		return usageError{fmt.Sprintf("--seq %d: the model has %d learned positions and cannot run past them", T, cfg.NPositions)}
	}
	m, err := model.New(cfg, *batch, T, gemm.New(*threads))
	if err != nil {
		return err
	}
	if err := checkpoint.LoadModel(dir, m); err != nil {
		return err
	}
	tok, err := loadTokenizer(*tokDir, dir)
	if err != nil {
		return err
	}
	corpus, err := data.Load(ctx, *dataSpec, tok, data.LoadOptions{})
	if err != nil {
		return err
	}
	if err := corpus.CheckVocab(cfg.VocabSize); err != nil {
		return err
	}
	if *valFrac > 0 {
		_, corpus = corpus.Split(*valFrac)
	}
	n := *steps
	available := (len(corpus.Tokens) - 1) / (*batch * T)
	if n == 0 {
		n = available
	}
	if n <= 0 || n > available {
		return fmt.Errorf("data has %d tokens: room for %d batches of %dx%d, asked for %d", len(corpus.Tokens), available, *batch, T, n)
	}
	loader, err := data.NewLoader(corpus.Tokens, data.LoaderConfig{Batch: *batch, Seq: T, DPSize: 1})
	if err != nil {
		return err
	}
	result := map[string]any{"checkpoint": dir, "batches": n, "seq": T, "n_positions": cfg.NPositions, "position": cfg.Position}
	if cfg.RopeScaling != nil {
		result["rope_scaling"] = cfg.RopeScaling
	}
	if *byPos {
		w := *bucket
		if w == 0 {
			w = max(1, cfg.NPositions/2)
		}
		if w < 0 {
			return usageError{fmt.Sprintf("--bucket %d must be positive", w)}
		}
		loss, count, buckets, err := evalByPosition(ctx, m, loader, *batch, T, n, w)
		if err != nil {
			return err
		}
		result["loss"], result["perplexity"], result["tokens"], result["by_position"] = loss, math.Exp(loss), count, buckets
		fmt.Fprintf(stderr, "%-13s %8s %8s %9s\n", "positions", "x train", "loss", "tokens")
		for _, b := range buckets {
			fmt.Fprintf(stderr, "%5d..%-6d %8.2f %8.4f %9d\n", b.From, b.To, float64(b.To)/float64(cfg.NPositions), b.Loss, b.Tokens)
		}
	} else {
		loss, count, err := trainer.Evaluate(ctx, m, loader, *batch, T, n)
		if err != nil {
			return err
		}
		result["loss"], result["perplexity"], result["tokens"] = loss, math.Exp(loss), count
	}
	out, _ := json.Marshal(result)
	_, err = fmt.Fprintln(stdout, string(out))
	return err
}

// positionBucket is the mean loss of positions [From, To) of each sequence.
type positionBucket struct {
	From   int     `json:"from"`
	To     int     `json:"to"`
	Loss   float64 `json:"loss"`
	Tokens int     `json:"tokens"`
}

// evalByPosition is trainer.Evaluate with the per-position losses kept:
// position t of every sequence goes to bucket t/width.
func evalByPosition(ctx context.Context, m *model.GPT, loader *data.Loader, B, T, steps, width int) (float64, int, []positionBucket, error) {
	in, tg := make([]int32, B*T), make([]int32, B*T)
	nb := (T + width - 1) / width
	sums, counts := make([]float64, nb), make([]int, nb)
	var sum float64
	var count int
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return 0, 0, nil, err
		}
		if err := loader.Next(in, tg); err != nil {
			return 0, 0, nil, fmt.Errorf("eval batch %d: %w", i, err)
		}
		if _, _, err := m.Forward(in, tg, B, T); err != nil {
			return 0, 0, nil, fmt.Errorf("eval batch %d: %w", i, err)
		}
		for n, l := range m.Losses() {
			if tg[n] == model.IgnoreIndex {
				continue
			}
			b := (n % T) / width
			sums[b] += float64(l)
			counts[b]++
			sum += float64(l)
			count++
		}
	}
	if count == 0 {
		return 0, 0, nil, fmt.Errorf("eval: no positions counted")
	}
	out := make([]positionBucket, nb)
	for b := range out {
		out[b] = positionBucket{From: b * width, To: min(T, (b+1)*width), Tokens: counts[b]}
		if counts[b] > 0 {
			out[b].Loss = sums[b] / float64(counts[b])
		}
	}
	return sum / float64(count), count, out, nil
}
