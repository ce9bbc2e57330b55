package main

import (
	"errors"
	"fmt"

	"github.com/strand-ml/strand/tokenizer"
)

// The tokenizer travels with the model: every checkpoint and export holds
// its files (tokenizer.json, vocab.json + merges.txt), and a command that
// starts from a checkpoint uses the checkpoint's tokenizer unless told
// otherwise, so a model is never fed another tokenizer's ids by accident.

// loadTokenizer is a command's tokenizer: the one saved in checkpoint ckpt
// (a strand checkpoint or a Hugging Face directory; "" for none), else
// --tokenizer's (flagDir), else bytes. A --tokenizer that differs from the
// checkpoint's is an error.
func loadTokenizer(flagDir, ckpt string) (tokenizer.Tokenizer, error) {
	var saved tokenizer.Tokenizer
	if ckpt != "" {
		t, err := tokenizer.LoadDir(ckpt)
		switch {
		case err == nil:
			saved = t
		case !errors.Is(err, tokenizer.ErrNoTokenizer):
			return nil, fmt.Errorf("checkpoint %s: tokenizer: %w", ckpt, err)
		}
	}
	if flagDir == "" {
		if saved != nil {
			return saved, nil
		}
		return tokenizer.Bytes{}, nil
	}
	tok, err := tokenizer.Load(flagDir)
	if err != nil {
		return nil, err
	}
	if saved != nil && !tokenizer.Same(saved, tok) {
		return nil, usageError{fmt.Sprintf("--tokenizer %s is not the tokenizer saved with %s (%d tokens there, %d here): drop --tokenizer to use the checkpoint's",
			flagDir, ckpt, saved.VocabSize(), tok.VocabSize())}
	}
	return tok, nil
}

// tokenizerFiles writes tok's files into a checkpoint directory before it
// is sealed (trainer.Trainer.CheckpointFiles); nil for bytes, which need
// none.
func tokenizerFiles(tok tokenizer.Tokenizer) func(dir string) error {
	if _, isBytes := tok.(tokenizer.Bytes); isBytes || tok == nil {
		return nil
	}
	return func(dir string) error { return tokenizer.SaveDir(dir, tok) }
}

// copyTokenizer writes the tokenizer saved in checkpoint from (if any)
// into the directory to (an export, a merged model).
func copyTokenizer(from, to string) error {
	tok, err := tokenizer.LoadDir(from)
	if errors.Is(err, tokenizer.ErrNoTokenizer) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checkpoint %s: tokenizer: %w", from, err)
	}
	return tokenizer.SaveDir(to, tok)
}
