package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/model"
)

// newDirFlags is newFlags for a command that takes one checkpoint or run
// directory as its positional argument: -h names it.
func newDirFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := newFlags(name, stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: strand %s DIR [flags]\n\n  DIR  a checkpoint directory, or a run directory (its newest committed checkpoint)\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	return fs
}

// parseDirFlags parses the flags around the DIR argument: -h is help
// (exit 0), anything else wrong a usage error.
func parseDirFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// describeAdapters prints, for a checkpoint of LoRA adapters, what they
// are and how to use them; nothing for a whole model.
func describeAdapters(w io.Writer, dir string) error {
	lora, err := finetune.IsAdapterCheckpoint(dir)
	if err != nil || !lora {
		return err
	}
	ac, err := finetune.ReadAdapterConfig(dir)
	if err != nil {
		fmt.Fprintf(w, "LoRA adapters only (%v)\n", err)
		return nil
	}
	base := ac.Base
	if base == "" {
		base = "none recorded (trained on a fresh model)"
	}
	fmt.Fprintf(w, "LoRA adapters only: rank %d, alpha %g on %v; base checkpoint %s\n", ac.Rank, ac.Alpha, ac.Targets, base)
	fmt.Fprintln(w, "  (commands taking --ckpt load the base and merge these; strand lora merge writes the merged model)")
	return nil
}

// wholeModel refuses a checkpoint of LoRA adapters where a command needs
// the whole model's tensors in the file (export, reshard).
func wholeModel(op, dir string) error {
	lora, err := finetune.IsAdapterCheckpoint(dir)
	if err != nil || !lora {
		return err
	}
	hint := ""
	if strings.HasPrefix(op, "ckpt export") {
		hint = ", or export the adapters with --format peft"
	}
	return fmt.Errorf("%s holds LoRA adapters only; %s needs a whole model: merge them into their base first (strand lora merge --adapters %s --out DIR)%s", dir, op, dir, hint)
}

// checkExport checks ckpt export's input (a whole model, but for --format
// peft) and output directory.
func checkExport(dir, format, out string, overwrite bool) error {
	if format != "peft" {
		if err := wholeModel("ckpt export --format "+format, dir); err != nil {
			return err
		}
	}
	return checkOutDir(out, overwrite)
}

// readConfig is checkpoint.ReadConfig with every missing required field
// of config.json named in one error.
func readConfig(dir string) (model.Config, error) {
	if err := checkpoint.CheckConfigFields(dir); err != nil {
		return model.Config{}, err
	}
	return checkpoint.ReadConfig(dir)
}
