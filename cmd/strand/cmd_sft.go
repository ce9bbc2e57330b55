package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/trainer"
)

// sftFlags configure `strand sft`: supervised fine-tuning of a checkpoint
// on a JSONL file (see package finetune for formats and the template).
type sftFlags struct {
	ftFlags
	pack         bool
	chatTemplate string
}

func (f *sftFlags) register(fs *flag.FlagSet) {
	f.ftFlags.register(fs, "sft", "{\"prompt\",\"response\"}, {\"messages\":[{\"role\",\"content\"}...]} or Alpaca's {\"instruction\",\"input\",\"output\"} per line", 3e-4)
	fs.BoolVar(&f.pack, "pack", true, "pack several examples per row (attention stays inside each example)")
	fs.StringVar(&f.chatTemplate, "chat-template", "", "render records with a model family's chat template: chatml (Qwen2), llama3 (default: strand's <|role|> lines)")
	f.registerTrainer(fs)
}

func runSFT(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f sftFlags
	fs := newFlags("sft", stderr)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := finetune.CheckTemplate(f.chatTemplate); err != nil {
		return usageError{err.Error()}
	}
	return f.launchOrRun(ctx, "sft", args, func(ctx context.Context, d *distributed) error {
		return sftLoop(ctx, &f, d, stdout, stderr)
	}, stdout, stderr)
}

// sftData reads, splits, encodes and packs the data file. Every rank does
// the same work on the same file, so all agree on the rows.
func sftData(f *sftFlags, logf func(string, ...any)) (train *finetune.Packed, held []finetune.Example, err error) {
	tok, err := loadTokenizer(f.tokenizerDir, f.ckpt)
	if err != nil {
		return nil, nil, err
	}
	recs, err := f.readRecords(finetune.SFT, logf)
	if err != nil {
		return nil, nil, err
	}
	enc := finetune.NewEncoder(tok)
	enc.Template = f.chatTemplate
	var exs []finetune.Example
	for _, r := range recs {
		ex, err := enc.SFT(r)
		if err != nil {
			return nil, nil, err
		}
		for _, id := range ex.Tokens {
			if int(id) >= f.vocabSize {
				return nil, nil, fmt.Errorf("line %d: token %d outside the model's vocabulary of %d", r.Line, id, f.vocabSize)
			}
		}
		exs = append(exs, ex)
	}
	nHeld := f.heldOut(len(exs))
	held = exs[len(exs)-nHeld:]
	train, err = finetune.Pack(exs[:len(exs)-nHeld], f.seq, f.pack, enc.EOS)
	if err != nil {
		return nil, nil, err
	}
	logf("packed %d training examples into %d rows of %d (%d truncated, %d dropped with nothing to train, %d padding positions); %d held out\n",
		train.Examples, train.Rows, f.seq, train.Truncated, train.Dropped, train.Padding, len(held))
	if w := truncationWarning(exs[:len(exs)-nHeld], train.Truncated, f.seq); w != "" {
		logf("%s\n", w)
	}
	return train, held, nil
}

// sftLoop fine-tunes this process's part of the model on the run loop.
func sftLoop(ctx context.Context, f *sftFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, coord, comms, logf := runInfo(dist, stderr)
	opts, err := f.options(m)
	if err != nil {
		return err
	}
	packed, held, err := sftData(f, logf)
	if err != nil {
		return err
	}
	batches, err := finetune.NewBatches(packed, finetune.BatchConfig{
		Batch: opts.RowsPerRank(m), DPRank: coord.DP, DPSize: m.DP, Shuffle: f.shuffle, Seed: f.seed})
	if err != nil {
		return err
	}
	tr, err := f.newTrainer(opts, comms, logf)
	if err != nil {
		return err
	}
	defer tr.Close()
	tr.Source = batches
	logf("sft: mesh %v | global batch %d x %d positions | %d steps\n", m, f.batch, f.seq, f.run.steps)
	rc := f.loopConfig(tr, dist, stdout, stderr)
	if len(held) > 0 && m.TP == 1 && m.PP == 1 {
		rc.Hooks.Finish = func(ctx context.Context, _ trainer.Summary) (map[string]any, []string, error) {
			// every rank: under ZeRO-3 the parameters are gathered first
			// (rank 0 then generates alone)
			if err := tr.MaterializeParams(ctx); err != nil || rank != 0 {
				return nil, nil, err
			}
			em, err := finetune.ExactMatch(ctx, tr.Model, held)
			if err != nil {
				return nil, nil, err
			}
			return map[string]any{"exact_match": em, "held_out": len(held)},
				[]string{fmt.Sprintf("exact match %.1f%% on %d held-out examples", 100*em, len(held))}, nil
		}
	}
	_, err = runLoop(ctx, f.trainerSteps(tr, rank, dist, nil), rc, dist)
	return err
}
