package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/generate"
	"github.com/strand-ml/strand/hf"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

// ropeScalingFlags set a RoPE model's rope_scaling: at training time (saved
// in config.json) or to override a checkpoint's at eval/generate time, which
// is how a model trained at n_positions is run at 2x or 4x.
type ropeScalingFlags struct {
	kind   string
	factor float64
	orig   int
}

func (r *ropeScalingFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.kind, "rope-scaling", "", "rope: context extension: linear, ntk or yarn (none: \"\"; \"off\" removes a checkpoint's)")
	fs.Float64Var(&r.factor, "rope-factor", 0, "rope scaling factor (e.g. 2 to run at twice the trained length)")
	fs.IntVar(&r.orig, "rope-original-positions", 0, "rope scaling: the trained context (default: n_positions)")
}

// apply overrides cfg's rope_scaling when a flag was given.
func (r *ropeScalingFlags) apply(cfg *model.Config) {
	switch r.kind {
	case "":
		if r.factor != 0 && cfg.RopeScaling != nil {
			s := *cfg.RopeScaling
			s.Factor = r.factor
			cfg.RopeScaling = &s
		}
		return
	case "off", "none":
		cfg.RopeScaling = nil
		return
	}
	orig := r.orig
	if orig == 0 {
		orig = cfg.NPositions
	}
	cfg.RopeScaling = &model.RopeScaling{Type: r.kind, Factor: r.factor, OriginalMaxPositionEmbeddings: orig}
}

// runGenerate streams text from a checkpoint to stdout.
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", stderr)
	ckpt := fs.String("ckpt", "", "checkpoint directory or run directory (its latest checkpoint)")
	prompt := fs.String("prompt", "", "text to continue")
	promptIDs := fs.String("prompt-ids", "", "token ids to continue, comma-separated (instead of --prompt; for models without a tokenizer)")
	jsonOut := fs.Bool("json", false, "print one JSON object (prompt_ids, ids, text, reason) instead of streaming text")
	tokDir := fs.String("tokenizer", "", "BPE tokenizer directory the model was trained with (default: bytes)")
	maxTokens := fs.Int("max-tokens", 256, "most tokens to generate")
	temperature := fs.Float64("temperature", 1, "sampling temperature; 0 is greedy")
	topK := fs.Int("top-k", 0, "keep the K most likely tokens (0: all)")
	topP := fs.Float64("top-p", 1, "nucleus sampling: keep the smallest set with probability >= P, in (0, 1]")
	seed := fs.Uint64("seed", 1337, "sampling seed (same seed, same text)")
	var stops []string
	fs.Func("stop", "stop at this string (repeatable)", func(s string) error {
		if s == "" {
			return fmt.Errorf("empty stop string")
		}
		stops = append(stops, s)
		return nil
	})
	contextLen := fs.Int("context", 0, "most positions, prompt included (default: n_positions, times the rope scaling factor)")
	recompute := fs.Bool("no-cache", false, "recompute the whole prefix for every token (slow; for comparison)")
	threads := fs.Int("threads", 0, "compute goroutines (default: all cores)")
	stats := fs.Bool("stats", false, "print tokens/s and the stop reason to stderr")
	echo := fs.Bool("echo", true, "print the prompt before the generated text")
	var scaling ropeScalingFlags
	scaling.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" {
		return usageError{"--ckpt is required"}
	}
	var ids []int
	switch {
	case *prompt != "" && *promptIDs != "":
		return usageError{"give --prompt or --prompt-ids, not both"}
	case *promptIDs != "":
		for _, f := range strings.Split(*promptIDs, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return usageError{fmt.Sprintf("--prompt-ids: %q is not a token id", f)}
			}
			ids = append(ids, id)
		}
	case *prompt == "":
		return usageError{"--prompt (or --prompt-ids) is required and must not be empty"}
	}
	sampling := generate.Sampling{Temperature: *temperature, TopK: *topK, TopP: *topP}
	if err := sampling.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if *maxTokens <= 0 {
		return usageError{fmt.Sprintf("--max-tokens %d must be positive", *maxTokens)}
	}
	dir, cfg, err := checkpointConfig(*ckpt, &scaling, stderr)
	if err != nil {
		return err
	}
	n := *contextLen
	if n < 0 {
		return usageError{fmt.Sprintf("--context %d must not be negative", n)}
	}
	if n == 0 {
		n = cfg.Context()
	}
	if cfg.Position == model.PosLearned && n > cfg.NPositions {
		return usageError{fmt.Sprintf("--context %d: the model has %d learned positions and cannot run past them", n, cfg.NPositions)}
	}
	maxT := 1
	if *recompute {
		maxT = n
	}
	m, err := model.New(cfg, 1, maxT, gemm.New(*threads))
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
	if _, isBytes := tok.(tokenizer.Bytes); isBytes {
		switch {
		case ids != nil:
			tok = nil // ids only and no tokenizer saved: nothing to decode with
		case hf.IsDir(dir):
			// a Hugging Face model's ids are its own tokenizer's: refuse
			// rather than feed it bytes
			return usageError{fmt.Sprintf("%s has no tokenizer (tokenizer.json or vocab.json + merges.txt): pass --tokenizer DIR, or --prompt-ids", dir)}
		}
	}
	g := generate.New(m, tok)
	if hf.IsDir(dir) { // eos_token_id from config.json / generation_config.json
		_, meta, err := hf.ReadConfig(dir)
		if err != nil {
			return err
		}
		g.EOSIDs = meta.EOS
	}
	opts := generate.Options{MaxTokens: *maxTokens, Sampling: sampling, Seed: *seed, Stop: stops, Context: n, Recompute: *recompute}
	if ids == nil && *jsonOut {
		ids = tok.Encode([]byte(*prompt))
	}
	if *jsonOut {
		res, err := g.StreamIDs(ctx, ids, opts, func(int, []byte) error { return nil })
		if err != nil {
			return err
		}
		out := map[string]any{"prompt_ids": ids, "ids": res.Tokens, "text": string(res.Text), "reason": res.Reason}
		if res.Tokens == nil {
			out["ids"] = []int{}
		}
		raw, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	if ids != nil {
		res, err := g.StreamIDs(ctx, ids, opts, func(id int, text []byte) error {
			if tok == nil && id != generate.NoToken {
				_, err := fmt.Fprintf(stdout, "%d ", id)
				return err
			}
			_, err := stdout.Write(text)
			return err
		})
		fmt.Fprintln(stdout)
		if err == nil && *stats {
			fmt.Fprintf(stderr, "%d prompt + %d generated tokens, stopped: %s\n", res.PromptTokens, len(res.Tokens), res.Reason)
		}
		return err
	}
	start := time.Now()
	echoed := !*echo
	res, err := g.Stream(ctx, *prompt, opts, func(_ int, text []byte) error {
		if !echoed { // only once the prompt is accepted
			echoed = true
			if _, err := io.WriteString(stdout, *prompt); err != nil {
				return err
			}
		}
		_, err := stdout.Write(text)
		return err
	})
	if err != nil {
		return err
	}
	if !echoed { // ended before the first token (end of text)
		io.WriteString(stdout, *prompt)
	}
	fmt.Fprintln(stdout)
	if *stats {
		el := time.Since(start)
		fmt.Fprintf(stderr, "%d prompt + %d generated tokens in %s (%.1f tokens/s), stopped: %s\n",
			res.PromptTokens, len(res.Tokens), el.Round(time.Millisecond), float64(len(res.Tokens))/el.Seconds(), res.Reason)
	}
	return nil
}
