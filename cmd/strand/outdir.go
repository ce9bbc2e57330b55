package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// checkOutDir applies the run directory's rule to a command that writes
// an output directory (lora merge, ckpt export, tokenizer train): out must
// be absent or empty unless overwrite is set. It changes nothing.
func checkOutDir(out string, overwrite bool) error {
	if out == "" {
		return usageError{"--out is required"}
	}
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		if fi, serr := os.Stat(out); serr == nil && !fi.IsDir() {
			return usageError{fmt.Sprintf("--out %s is a file, not a directory", out)}
		}
		return fmt.Errorf("--out %s: %w", out, err)
	case len(entries) == 0 || overwrite:
		return nil
	}
	var held []string
	for _, e := range entries[:min(4, len(entries))] {
		held = append(held, e.Name())
	}
	if len(entries) > 4 {
		held = append(held, "...")
	}
	return usageError{fmt.Sprintf("--out %s is not empty (%s): choose another --out, or replace what it holds with --overwrite",
		out, strings.Join(held, ", "))}
}
