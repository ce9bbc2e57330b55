package generate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"unicode/utf8"

	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

// NoToken is the id of the final callback that flushes held-back text.
const NoToken = -1

// Options control one generation.
type Options struct {
	// MaxTokens is the most new tokens to produce (required, > 0).
	MaxTokens int
	Sampling
	// Seed seeds the sampler; the same seed gives the same text.
	Seed uint64
	// Stop ends generation at the first occurrence of any of these strings
	// in the generated text (excluded from the output).
	Stop []string
	// Context is the most positions (prompt + generated) to run; 0 means
	// the model's Config.Context(): n_positions, times the RoPE scaling
	// factor if any. A learned-position model cannot exceed n_positions.
	Context int
	// Recompute runs the full prefix through the model for every token
	// instead of using the KV cache: the slow reference, for benchmarks and
	// checks. The model must have been built for Context positions.
	Recompute bool
}

// Result describes a finished generation.
type Result struct {
	PromptTokens int
	Tokens       []int  // generated ids (without a final end-of-text token)
	Text         []byte // generated text, cut before a stop string
	// Reason is why generation ended: "max_tokens", "stop", "eos" or
	// "context" (the context is full).
	Reason string
}

// Generator produces text from a model and its tokenizer.
type Generator struct {
	Model *model.GPT
	// Tok encodes prompts and decodes tokens; nil means ids only (a model
	// shipped without a tokenizer: StreamIDs, with no text).
	Tok tokenizer.Tokenizer
	// EOS, when >= 0, is the end-of-text token: generation stops there.
	// New sets it to <|endoftext|> when the tokenizer has one.
	EOS int
	// EOSIDs are more end tokens (a Hugging Face config's eos_token_id,
	// one or several): generation stops at any of them or at EOS.
	EOSIDs []int
}

// isEOS reports whether id ends generation.
func (g *Generator) isEOS(id int) bool {
	if id == g.EOS {
		return true
	}
	for _, e := range g.EOSIDs {
		if id == e {
			return true
		}
	}
	return false
}

// New returns a generator for a single-process model (TP = PP = 1).
func New(m *model.GPT, tok tokenizer.Tokenizer) *Generator {
	g := &Generator{Model: m, Tok: tok, EOS: -1}
	if tok == nil {
		return g
	}
	if sp, ok := tok.(interface{ SpecialID(string) (int, bool) }); ok {
		if id, ok := sp.SpecialID("<|endoftext|>"); ok {
			g.EOS = id
		}
	}
	return g
}

// Stream generates text after prompt, calling fn as each token is produced
// with its id and the text that became printable (possibly empty: a token
// can end inside a UTF-8 character or a possible stop string). A last call
// with id NoToken hands out any text still held back. An error from fn
// stops generation and is returned.
func (g *Generator) Stream(ctx context.Context, prompt string, opts Options, fn func(tokenID int, text []byte) error) (Result, error) {
	if prompt == "" {
		return Result{}, fmt.Errorf("generate: empty prompt (the model needs at least one token to condition on)")
	}
	if g.Tok == nil {
		return Result{}, fmt.Errorf("generate: a text prompt needs a tokenizer (give token ids instead)")
	}
	return g.StreamIDs(ctx, g.Tok.Encode([]byte(prompt)), opts, fn)
}

// StreamIDs is Stream for a prompt given as token ids. Without a
// tokenizer (Tok nil) fn gets each id with no text and Result.Text is
// empty.
func (g *Generator) StreamIDs(ctx context.Context, ids []int, opts Options, fn func(tokenID int, text []byte) error) (Result, error) {
	if opts.TopP == 0 {
		opts.TopP = 1
	}
	if opts.MaxTokens <= 0 {
		return Result{}, fmt.Errorf("generate: max tokens %d must be positive", opts.MaxTokens)
	}
	sampler, err := NewSampler(opts.Sampling, opts.Seed)
	if err != nil {
		return Result{}, fmt.Errorf("generate: %w", err)
	}
	for _, s := range opts.Stop {
		if s == "" {
			return Result{}, fmt.Errorf("generate: empty stop string")
		}
	}
	if len(ids) == 0 {
		return Result{}, fmt.Errorf("generate: empty prompt (the model needs at least one token to condition on)")
	}
	cfg := g.Model.Config
	if g.Tok != nil && g.Tok.VocabSize() > cfg.VocabSize {
		return Result{}, fmt.Errorf("generate: the tokenizer has %d tokens, the model only %d", g.Tok.VocabSize(), cfg.VocabSize)
	}
	for i, id := range ids {
		if id < 0 || id >= cfg.VocabSize {
			return Result{}, fmt.Errorf("generate: prompt token %d (id %d) is outside the vocabulary of %d", i, id, cfg.VocabSize)
		}
	}
	ctxLen := opts.Context
	if ctxLen == 0 {
		ctxLen = cfg.Context()
		if w := cfg.SlidingWindow; w > 0 && ctxLen > w {
			ctxLen = w // full attention equals the sliding window's up to it
		}
	}
	if cfg.Position == model.PosLearned && ctxLen > cfg.NPositions {
		return Result{}, fmt.Errorf("generate: context %d exceeds the %d trained positions of a learned-position model", ctxLen, cfg.NPositions)
	}
	if len(ids) >= ctxLen {
		return Result{}, fmt.Errorf("generate: the prompt has %d tokens; the context holds %d, leaving no room to generate", len(ids), ctxLen)
	}
	prompt32 := make([]int32, len(ids))
	for i, id := range ids {
		prompt32[i] = int32(id)
	}
	var step stepper
	if opts.Recompute {
		step, err = newRecompute(g.Model, ctxLen)
	} else {
		step, err = newCached(g.Model, ctxLen)
	}
	if err != nil {
		return Result{}, fmt.Errorf("generate: %w", err)
	}
	res := Result{PromptTokens: len(ids), Reason: "max_tokens"}
	out := &streamer{stop: opts.Stop, fn: fn}
	var dec *tokenizer.StreamDecoder // id by id with Decode's text (SentencePiece word marks)
	if g.Tok != nil {
		dec = tokenizer.NewStreamDecoder(g.Tok)
	}
	logits, err := step.append(ctx, prompt32)
	if err != nil {
		return res, fmt.Errorf("generate: prompt: %w", err)
	}
	for len(res.Tokens) < opts.MaxTokens {
		id := sampler.Next(logits)
		if g.isEOS(id) {
			res.Reason = "eos"
			break
		}
		res.Tokens = append(res.Tokens, id)
		var text []byte
		if g.Tok != nil {
			if text, err = dec.Next(id); err != nil {
				return res, fmt.Errorf("generate: %w", err)
			}
		}
		stopped, err := out.add(id, text)
		if err != nil {
			return res, err
		}
		if stopped {
			res.Reason = "stop"
			break
		}
		if len(res.Tokens) == opts.MaxTokens {
			break
		}
		if step.len() == ctxLen {
			res.Reason = "context"
			break
		}
		if logits, err = step.append(ctx, []int32{int32(id)}); err != nil {
			return res, fmt.Errorf("generate: token %d: %w", len(res.Tokens), err)
		}
	}
	res.Text = out.text()
	return res, out.flush()
}

// Generate is Stream without a callback: it returns the whole result.
func (g *Generator) Generate(ctx context.Context, prompt string, opts Options) (Result, error) {
	return g.Stream(ctx, prompt, opts, func(int, []byte) error { return nil })
}

// stepper appends tokens to the sequence and returns the next-token logits.
type stepper interface {
	append(ctx context.Context, tokens []int32) ([]float32, error)
	len() int
}

type cached struct{ c *model.KVCache }

func newCached(m *model.GPT, n int) (*cached, error) {
	c, err := m.NewKVCache(n)
	return &cached{c}, err
}

func (s *cached) append(ctx context.Context, t []int32) ([]float32, error) {
	return s.c.Forward(ctx, t)
}
func (s *cached) len() int { return s.c.Len() }

// recompute runs the whole prefix each step (no cache).
type recompute struct {
	m   *model.GPT
	seq []int32
}

func newRecompute(m *model.GPT, n int) (*recompute, error) {
	if m.MaxT < n {
		return nil, fmt.Errorf("recompute needs a model built for %d positions, this one has %d", n, m.MaxT)
	}
	return &recompute{m: m}, nil
}

func (s *recompute) append(ctx context.Context, t []int32) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.seq = append(s.seq, t...)
	T := len(s.seq)
	if _, _, err := s.m.Forward(s.seq, nil, 1, T); err != nil {
		return nil, err
	}
	V := s.m.Config.VocabSize
	return s.m.Logits()[(T-1)*V : T*V], nil
}

func (s *recompute) len() int { return len(s.seq) }

// streamer hands generated bytes to fn once they cannot be part of a stop
// string and do not end inside a UTF-8 character.
type streamer struct {
	stop    []string
	fn      func(int, []byte) error
	buf     []byte
	emitted int
	done    bool
}

// add appends a token's bytes; it reports whether a stop string appeared.
func (s *streamer) add(id int, b []byte) (bool, error) {
	s.buf = append(s.buf, b...)
	tail := s.buf[s.emitted:]
	cut := -1
	for _, st := range s.stop {
		if i := bytes.Index(tail, []byte(st)); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		s.buf = s.buf[:s.emitted+cut]
		s.done = true
		return true, s.emit(id, len(s.buf))
	}
	safe := len(s.buf) - s.heldForStop(tail)
	// do not end inside a UTF-8 character: back up to the start of an
	// incomplete last rune (invalid bytes count as complete)
	for start := safe - 1; start >= max(s.emitted, safe-utf8.UTFMax); start-- {
		if utf8.RuneStart(s.buf[start]) {
			if !utf8.FullRune(s.buf[start:safe]) {
				safe = start
			}
			break
		}
	}
	return false, s.emit(id, safe)
}

// heldForStop is the length of the longest suffix of tail that is a proper
// prefix of a stop string (it may still grow into one).
func (s *streamer) heldForStop(tail []byte) int {
	held := 0
	for _, st := range s.stop {
		for n := min(len(st)-1, len(tail)); n > held; n-- {
			if bytes.HasSuffix(tail, []byte(st[:n])) {
				held = n
				break
			}
		}
	}
	return held
}

func (s *streamer) emit(id, upto int) error {
	text := s.buf[s.emitted:upto]
	s.emitted = upto
	return s.fn(id, text)
}

func (s *streamer) text() []byte { return append([]byte(nil), s.buf...) }

// flush hands out whatever is still held back.
func (s *streamer) flush() error {
	if s.emitted == len(s.buf) {
		return nil
	}
	return s.emit(NoToken, len(s.buf))
}

// Token is one step of Tokens: a generated id (NoToken for the final
// flush) and the text that became printable with it.
type Token struct {
	ID   int
	Text []byte
}

// errStopped ends Stream when the caller of Tokens stops ranging.
var errStopped = errors.New("generate: iteration stopped")

// Tokens is Stream as an iterator:
//
//	for tok, err := range g.Tokens(ctx, prompt, opts) {
//		if err != nil { ... }
//		os.Stdout.Write(tok.Text)
//	}
//
// An error (bad options, a model failure) is yielded once, last. Breaking
// out of the loop stops generation.
func (g *Generator) Tokens(ctx context.Context, prompt string, opts Options) iter.Seq2[Token, error] {
	return func(yield func(Token, error) bool) {
		_, err := g.Stream(ctx, prompt, opts, func(id int, text []byte) error {
			if !yield(Token{ID: id, Text: text}, nil) {
				return errStopped
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopped) {
			yield(Token{ID: NoToken}, err)
		}
	}
}
