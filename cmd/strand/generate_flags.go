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

	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/generate"
	"github.com/strand-ml/strand/hf"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

// genFlags are strand generate's flags.
type genFlags struct {
	ckpt, prompt, promptIDs, tokDir string
	chat                            bool
	system                          string
	jsonOut, recompute, stats, echo bool
	maxTokens, topK, contextLen     int
	threads                         int
	temperature, topP               float64
	seed                            uint64
	stops                           []string
	scaling                         ropeScalingFlags
}

func (f *genFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.ckpt, "ckpt", "", "checkpoint directory or run directory (its latest checkpoint); LoRA adapters load onto their base")
	fs.StringVar(&f.prompt, "prompt", "", "text to continue (with --chat: the user's message)")
	fs.BoolVar(&f.chat, "chat", false, "render --prompt as a user turn with the chat template strand sft trains on (<|user|>, <|assistant|>; see the README) and print the assistant's reply, stopping at its end")
	fs.StringVar(&f.system, "system", "", "with --chat: a system turn before the user's")
	fs.StringVar(&f.promptIDs, "prompt-ids", "", "token ids to continue, comma-separated (instead of --prompt; for models without a tokenizer)")
	fs.BoolVar(&f.jsonOut, "json", false, "print one JSON object (prompt_ids, ids, text, reason) instead of streaming text")
	fs.StringVar(&f.tokDir, "tokenizer", "", "BPE tokenizer directory (default: the checkpoint's own, else bytes; a different one is refused)")
	fs.IntVar(&f.maxTokens, "max-tokens", 256, "most tokens to generate")
	fs.Float64Var(&f.temperature, "temperature", 1, "sampling temperature; 0 is greedy")
	fs.IntVar(&f.topK, "top-k", 0, "keep the K most likely tokens (0: all)")
	fs.Float64Var(&f.topP, "top-p", 1, "nucleus sampling: keep the smallest set with probability >= P, in (0, 1]")
	fs.Uint64Var(&f.seed, "seed", 1337, "sampling seed (same seed, same text)")
	fs.Func("stop", "stop at this string (repeatable)", func(s string) error {
		if s == "" {
			return fmt.Errorf("empty stop string")
		}
		f.stops = append(f.stops, s)
		return nil
	})
	fs.IntVar(&f.contextLen, "context", 0, "most positions, prompt included (default: n_positions, times the rope scaling factor)")
	fs.BoolVar(&f.recompute, "no-cache", false, "recompute the whole prefix for every token (slow; for comparison)")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines (default: all cores)")
	fs.BoolVar(&f.stats, "stats", false, "print tokens/s and the stop reason to stderr")
	fs.BoolVar(&f.echo, "echo", true, "print the prompt before the generated text (not with --chat)")
	f.scaling.register(fs)
}

// check validates the flags that need no model; it returns the prompt's
// token ids under --prompt-ids.
func (f *genFlags) check() ([]int, error) {
	if f.ckpt == "" {
		return nil, usageError{"--ckpt is required"}
	}
	var ids []int
	switch {
	case f.prompt != "" && f.promptIDs != "":
		return nil, usageError{"give --prompt or --prompt-ids, not both"}
	case f.promptIDs != "" && f.chat:
		return nil, usageError{"--chat renders --prompt text: give --prompt, not --prompt-ids"}
	case f.promptIDs != "":
		for _, s := range strings.Split(f.promptIDs, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil, usageError{fmt.Sprintf("--prompt-ids: %q is not a token id", s)}
			}
			ids = append(ids, id)
		}
	case f.prompt == "":
		return nil, usageError{"--prompt (or --prompt-ids) is required and must not be empty"}
	case f.system != "" && !f.chat:
		return nil, usageError{"--system is a turn of the chat template: use it with --chat"}
	}
	if err := f.sampling().Validate(); err != nil {
		return nil, usageError{err.Error()}
	}
	if f.maxTokens <= 0 {
		return nil, usageError{fmt.Sprintf("--max-tokens %d must be positive", f.maxTokens)}
	}
	if f.contextLen < 0 {
		return nil, usageError{fmt.Sprintf("--context %d must not be negative", f.contextLen)}
	}
	if f.chat {
		f.prompt = finetune.ChatPrompt(f.system, f.prompt)
		f.echo = false
	}
	return ids, nil
}

func (f *genFlags) sampling() generate.Sampling {
	return generate.Sampling{Temperature: f.temperature, TopK: f.topK, TopP: f.topP}
}

// generator loads the checkpoint (adapters merged into their base) and
// its tokenizer, and returns the generator and its options.
func (f *genFlags) generator(ids []int, stderr io.Writer) (*generate.Generator, generate.Options, error) {
	var opts generate.Options
	dir, cfg, err := checkpointConfig(f.ckpt, &f.scaling, stderr)
	if err != nil {
		return nil, opts, err
	}
	n := f.contextLen
	if n == 0 {
		n = cfg.Context()
	}
	if cfg.Position == model.PosLearned && n > cfg.NPositions {
		return nil, opts, usageError{fmt.Sprintf("--context %d: the model has %d learned positions and cannot run past them", n, cfg.NPositions)}
	}
	maxT := 1
	if f.recompute {
		maxT = n
	}
	m, err := model.New(cfg, 1, maxT, gemm.New(f.threads))
	if err != nil {
		return nil, opts, err
	}
	if err := finetune.LoadWeights(dir, m); err != nil {
		return nil, opts, err
	}
	tok, err := loadTokenizer(f.tokDir, dir)
	if err != nil {
		return nil, opts, err
	}
	if _, isBytes := tok.(tokenizer.Bytes); isBytes {
		switch {
		case ids != nil:
			tok = nil // ids only and no tokenizer saved: nothing to decode with
		case hf.IsDir(dir):
			// a Hugging Face model's ids are its own tokenizer's: refuse
			// rather than feed it bytes
			return nil, opts, usageError{fmt.Sprintf("%s has no tokenizer (tokenizer.json or vocab.json + merges.txt): pass --tokenizer DIR, or --prompt-ids", dir)}
		}
	}
	g := generate.New(m, tok)
	if hf.IsDir(dir) { // eos_token_id from config.json / generation_config.json
		_, meta, err := hf.ReadConfig(dir)
		if err != nil {
			return nil, opts, err
		}
		g.EOSIDs = meta.EOS
	}
	if f.chat { // the template's end of turn: EOS, byte 0 for the byte tokenizer
		g.EOSIDs = append(g.EOSIDs, int(finetune.EOS(tok)))
	}
	opts = generate.Options{MaxTokens: f.maxTokens, Sampling: f.sampling(), Seed: f.seed, Stop: f.stops, Context: n, Recompute: f.recompute}
	return g, opts, nil
}

// generateJSON prints one JSON object: prompt ids, generated ids, text and
// the stop reason.
func generateJSON(ctx context.Context, g *generate.Generator, ids []int, opts generate.Options, stdout io.Writer) error {
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

// generateIDs streams from a prompt of token ids: text when a tokenizer
// decodes it, the ids otherwise.
func (f *genFlags) generateIDs(ctx context.Context, g *generate.Generator, ids []int, opts generate.Options, stdout, stderr io.Writer) error {
	res, err := g.StreamIDs(ctx, ids, opts, func(id int, text []byte) error {
		if g.Tok == nil && id != generate.NoToken {
			_, err := fmt.Fprintf(stdout, "%d ", id)
			return err
		}
		_, err := stdout.Write(text)
		return err
	})
	fmt.Fprintln(stdout)
	if err == nil && f.stats {
		fmt.Fprintf(stderr, "%d prompt + %d generated tokens, stopped: %s\n", res.PromptTokens, len(res.Tokens), res.Reason)
	}
	return err
}

// generateText streams text after the prompt (echoed first with --echo).
func (f *genFlags) generateText(ctx context.Context, g *generate.Generator, opts generate.Options, stdout, stderr io.Writer) error {
	start := time.Now()
	echoed := !f.echo
	res, err := g.Stream(ctx, f.prompt, opts, func(_ int, text []byte) error {
		if !echoed { // only once the prompt is accepted
			echoed = true
			if _, err := io.WriteString(stdout, f.prompt); err != nil {
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
		io.WriteString(stdout, f.prompt)
	}
	fmt.Fprintln(stdout)
	if f.stats {
		el := time.Since(start)
		fmt.Fprintf(stderr, "%d prompt + %d generated tokens in %s (%.1f tokens/s), stopped: %s\n",
			res.PromptTokens, len(res.Tokens), el.Round(time.Millisecond), float64(len(res.Tokens))/el.Seconds(), res.Reason)
	}
	return nil
}
