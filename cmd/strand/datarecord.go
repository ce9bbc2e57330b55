package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/strand-ml/strand/checkpoint"
)

// dataRecord is what strand train records in every checkpoint's
// trainer_state.json under "data": the corpus and its split, so that
// `strand eval --ckpt RUN` without --data recomputes the same held-out
// tail (data.Load with these options, then Corpus.Split(ValFrac)) and
// evaluates on it, not on the training tokens.
type dataRecord struct {
	Spec      string  `json:"spec"`      // --data, made absolute; "" is the Go source tree
	Tokenizer string  `json:"tokenizer"` // --tokenizer, absolute; "" is bytes
	MaxBytes  int64   `json:"max_bytes"` // --max-data-bytes
	ValFrac   float64 `json:"val_frac"`  // --val-frac
}

// dataRecordKey is the record's key in trainer_state.json.
const dataRecordKey = "data"

func newDataRecord(f *trainFlags) dataRecord {
	return dataRecord{Spec: absOrEmpty(f.dataSpec), Tokenizer: absOrEmpty(f.tokenizerDir), MaxBytes: f.maxDataBytes, ValFrac: f.valFrac}
}

func absOrEmpty(p string) string {
	if p == "" || p == "-" {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// readDataRecord reads the record of the checkpoint dir; ok is false when
// it has none (a fine-tuning checkpoint, or one written before the record).
func readDataRecord(dir string) (r dataRecord, ok bool, err error) {
	var st struct {
		Data *dataRecord `json:"data"`
	}
	if err := checkpoint.LoadTrainerState(dir, &st); errors.Is(err, fs.ErrNotExist) {
		return r, false, nil // a Hugging Face directory, an exported model
	} else if err != nil {
		return r, false, fmt.Errorf("checkpoint %s: trainer state: %w", dir, err)
	}
	if st.Data == nil {
		return r, false, nil
	}
	return *st.Data, true, nil
}
