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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" {
		return usageError{"--ckpt is required"}
	}
	if *batch <= 0 {
		return usageError{fmt.Sprintf("--batch %d must be positive", *batch)}
	}
	dir, warns, err := checkpoint.Resolve(*ckpt)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		return err
	}
	cfg, err := checkpoint.ReadConfig(dir)
	if err != nil {
		return err
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
	tok, err := loadTokenizer(*tokDir)
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
	loss, count, err := trainer.Evaluate(ctx, m, loader, *batch, T, n)
	if err != nil {
		return err
	}
	out, _ := json.Marshal(map[string]any{
		"loss": loss, "perplexity": math.Exp(loss), "tokens": count, "batches": n, "checkpoint": dir,
	})
	_, err = fmt.Fprintln(stdout, string(out))
	return err
}
