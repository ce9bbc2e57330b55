package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// runEvalChoice is `strand eval choice`: multiple-choice accuracy of a
// checkpoint by per-choice log-likelihood (HellaSwag-style), printed as
// one JSON object.
func runEvalChoice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval choice", stderr)
	ckpt := fs.String("ckpt", "", "checkpoint directory or run directory (its latest checkpoint)")
	dataPath := fs.String("data", "", `JSONL: {"context"|"ctx": ..., "choices"|"endings": [...], "label": i} per line`)
	tokDir := fs.String("tokenizer", "", "BPE tokenizer directory (default: bytes, ids 0-255)")
	onBad := fs.String("on-bad-record", "fail", "malformed JSONL line: skip (report its line number and count it) or fail")
	threads := fs.Int("threads", 0, "compute goroutines (default: all cores)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" || *dataPath == "" {
		return usageError{"eval choice: --ckpt and --data are required"}
	}
	policy, err := finetune.ParsePolicy(*onBad)
	if err != nil {
		return usageError{err.Error()}
	}
	dir, warns, err := checkpoint.Resolve(*ckpt)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		return err
	}
	cfg, err := readConfig(dir)
	if err != nil {
		return err
	}
	tok, err := loadTokenizer(*tokDir, dir)
	if err != nil {
		return err
	}
	fh, err := os.Open(*dataPath)
	if err != nil {
		return err
	}
	defer fh.Close()
	qs, rep, err := finetune.ReadChoices(fh, policy)
	if err != nil {
		return fmt.Errorf("%s: %w", *dataPath, err)
	}
	for i, b := range rep.Bad {
		if i == 10 {
			fmt.Fprintf(stderr, "... %d more bad records\n", len(rep.Bad)-10)
			break
		}
		fmt.Fprintf(stderr, "%s: skipped %s\n", *dataPath, b)
	}
	fmt.Fprintf(stderr, "data %s: %d lines, %d questions, %d skipped as malformed, %d blank\n", *dataPath, rep.Lines, rep.Records, rep.Skipped, rep.Blank)
	most := 2
	for _, q := range qs {
		most = max(most, len(q.Choices))
	}
	m, err := model.New(cfg, most, cfg.NPositions, gemm.New(*threads))
	if err != nil {
		return err
	}
	if err := finetune.LoadWeights(dir, m); err != nil {
		return err
	}
	res, err := finetune.ScoreChoices(ctx, m, finetune.NewEncoder(tok), qs)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}
