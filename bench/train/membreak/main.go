// Command membreak prints, as one JSON line, the memory a single-process
// training step of a preset holds by design: parameters, gradients, AdamW's
// two moments, and activations with the backward scratch (and, in bf16 or
// fp16, the reduced-precision copies), for comparison with the measured
// peak RSS of `strand train` (bench/train/step.py).
//
//	go run ./bench/train/membreak -model gpt2s -precision bf16
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/trainer"
)

func main() {
	name := flag.String("model", "small", "preset")
	precision := flag.String("precision", "fp32", "fp32, bf16 or fp16")
	flag.Parse()
	if err := run(*name, *precision); err != nil {
		fmt.Fprintln(os.Stderr, "membreak:", err)
		os.Exit(1)
	}
}

func run(name, precision string) error {
	cfg, err := model.Preset(name)
	if err != nil {
		return err
	}
	B, T := model.PresetBatch(name), cfg.NPositions
	opts := trainer.Options{Model: cfg, Batch: B, Seq: T, Steps: 1, LR: 1e-3, GradClip: 1,
		AdamW: optim.DefaultAdamW(), Threads: 1, Precision: precision}
	toks := make([]uint16, 4*B*(T+1))
	loader, err := data.NewLoader(toks, data.LoaderConfig{Batch: B, Seq: T, DPSize: 1})
	if err != nil {
		return err
	}
	tr, err := trainer.New(opts, loader, nil)
	if err != nil {
		return err
	}
	defer tr.Close()
	for range 3 {
		if _, err := tr.TrainStep(context.Background()); err != nil {
			return err
		}
	}
	p := int64(len(tr.Model.Params.Data)) * 4
	out := map[string]any{
		"model": name, "precision": precision, "params": len(tr.Model.Params.Data),
		"param_bytes": p, "grad_bytes": int64(len(tr.Model.Params.Grad)) * 4,
		"optimizer_bytes":  int64(len(tr.Opt.M)+len(tr.Opt.V)) * 4,
		"activation_bytes": tr.ActivationBytes(),
		// the model's own backward scratch and bf16/fp16 copies:
		// GPT.ActivationBytes counts them plus one default activation set,
		// the same size as the trainer's single slot at Micro 1
		"scratch_bytes": tr.Model.ActivationBytes() - tr.ActivationBytes(),
		// this process after 3 steps: nothing but the trainer and the Go
		// runtime (strand train's peak also holds the corpus, evaluation
		// and checkpoint buffers)
		"peak_rss_bytes": peakRSS(),
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// peakRSS is this process's peak resident set (VmHWM) in bytes, 0 if unknown.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
