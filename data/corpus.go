package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// Tokenizer is what Load needs from a tokenizer; tokenizer.BPE and
// tokenizer.Bytes satisfy it.
type Tokenizer interface {
	Encode(text []byte) []int
	VocabSize() int
}

// specialTokenizer is implemented by tokenizers with special tokens
// (tokenizer.BPE). Load uses it to find "<|endoftext|>".
type specialTokenizer interface {
	SpecialID(text string) (int, bool)
}

// EndOfText is the GPT-2 document separator token.
const EndOfText = "<|endoftext|>"

// DefaultMaxBytes caps the default corpus (the Go source tree) at 8 MiB of
// text: a few minutes of tokenizing, plenty for the small presets.
const DefaultMaxBytes = 8 << 20

// LoadOptions tune Load.
type LoadOptions struct {
	// MaxBytes caps the text read from text sources, counted over all files
	// in order; the file that crosses the cap is cut. <= 0 means
	// DefaultMaxBytes for the default Go-source corpus and no cap otherwise.
	MaxBytes int64
	// MaxTokens, when > 0, truncates the final corpus (text or shards).
	MaxTokens int64
	// GoRoot overrides the Go root used for the default corpus (tests).
	GoRoot string
}

// Corpus is a tokenized data set held in memory.
type Corpus struct {
	Tokens []uint16
	Source string // human-readable description of where the tokens came from
	Files  int    // number of files read
	// Paths are the files read, in order; Skipped the candidate files
	// left out as binary (a NUL byte in their first 8 KiB).
	Paths, Skipped []string
}

// Load reads the corpus named by spec:
//
//	""                  the .go files under GOROOT/src (sorted, no testdata)
//	path/to/x.bin       one llm.c shard
//	"dir/train_*.bin"   a glob of shards, concatenated in sorted order
//	path/to/file.txt    one text file (any non-.bin file)
//	path/to/dir         every text file below dir, in sorted path order
//	                    (or, if it holds only .bin files, those shards)
//	"dir/*.txt"         a glob of text files and/or directories
//
// Text is tokenized with tok; documents (files) are separated by the
// tokenizer's <|endoftext|> token when it has one, otherwise by a newline.
// tok may be nil when spec names only shards.
func Load(ctx context.Context, spec string, tok Tokenizer, opts LoadOptions) (*Corpus, error) {
	c, err := load(ctx, spec, tok, opts)
	if err != nil {
		if spec == "" {
			return nil, fmt.Errorf("load default corpus (Go sources): %w", err)
		}
		return nil, fmt.Errorf("load data %q: %w", spec, err)
	}
	if opts.MaxTokens > 0 && int64(len(c.Tokens)) > opts.MaxTokens {
		c.Tokens = c.Tokens[:opts.MaxTokens]
	}
	if len(c.Tokens) == 0 {
		return nil, fmt.Errorf("load data %q: no tokens in %s", spec, c.Source)
	}
	return c, nil
}

func load(ctx context.Context, spec string, tok Tokenizer, opts LoadOptions) (*Corpus, error) {
	if spec == "" {
		root, err := goRoot(ctx, opts.GoRoot)
		if err != nil {
			return nil, err
		}
		src := filepath.Join(root, "src")
		files, err := walkFiles(src, true, func(p string) bool { return strings.HasSuffix(p, ".go") })
		if err != nil {
			return nil, err
		}
		max := opts.MaxBytes
		if max <= 0 {
			max = DefaultMaxBytes
		}
		return tokenizeFiles(ctx, files, tok, max, fmt.Sprintf("Go sources in %s", src))
	}

	files, shards, err := resolve(spec)
	if err != nil {
		return nil, err
	}
	if shards {
		return loadShards(ctx, files)
	}
	if tok == nil {
		return nil, errors.New("text data needs a tokenizer")
	}
	return tokenizeFiles(ctx, files, tok, opts.MaxBytes, fmt.Sprintf("text %s", spec))
}

// resolve expands spec (not "") into files: shards (every file a .bin) or
// candidate text files, in sorted path order.
func resolve(spec string) (files []string, shards bool, err error) {
	var paths []string
	if strings.ContainsAny(spec, "*?[") {
		m, err := filepath.Glob(spec)
		if err != nil {
			return nil, false, fmt.Errorf("bad glob: %w", err)
		}
		if len(m) == 0 {
			return nil, false, errors.New("glob matches no files")
		}
		slices.Sort(m)
		paths = m
	} else {
		if _, err := os.Stat(spec); err != nil {
			return nil, false, err
		}
		paths = []string{spec}
	}

	nbin := 0
	for _, p := range paths {
		if strings.HasSuffix(p, ".bin") {
			nbin++
		}
	}
	switch {
	case nbin == len(paths):
		return paths, true, nil
	case nbin > 0:
		return nil, false, fmt.Errorf("matches mix %d .bin shards with %d other files; use one kind", nbin, len(paths)-nbin)
	}

	// Expand directories into their files.
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, false, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		sub, err := walkFiles(p, false, func(string) bool { return true })
		if err != nil {
			return nil, false, err
		}
		files = append(files, sub...)
	}
	// A directory of nothing but shards (llm.c's train_000.bin, ...) is
	// shard data; otherwise the files are text and binary ones are skipped.
	allBin := true
	for _, f := range files {
		allBin = allBin && strings.HasSuffix(f, ".bin")
	}
	return files, allBin, nil
}

func loadShards(ctx context.Context, paths []string) (*Corpus, error) {
	c := &Corpus{Source: fmt.Sprintf("%d shard(s) %s", len(paths), strings.Join(paths, ", "))}
	if len(paths) > 3 {
		c.Source = fmt.Sprintf("%d shards %s ... %s", len(paths), paths[0], paths[len(paths)-1])
	}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, err := ReadShard(p)
		if err != nil {
			return nil, err
		}
		c.Tokens = append(c.Tokens, t...)
		c.Files++
		c.Paths = append(c.Paths, p)
	}
	return c, nil
}

// walkFiles lists regular files under root accepted by keep, in sorted path
// order, skipping hidden (".x") entries and testdata directories; with
// goRules it also skips "_x" entries, as the go tool does.
func walkFiles(root string, goRules bool, keep func(string) bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != root && (strings.HasPrefix(name, ".") || goRules && strings.HasPrefix(name, "_")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if name == "testdata" && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && keep(p) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// WalkDir is lexical per directory; sort whole paths so "a/b" vs "a.go"
	// orders the same way everywhere.
	slices.Sort(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no files found under %s", root)
	}
	return out, nil
}

// tokenizeFiles reads files in order (up to maxBytes of text when > 0),
// skipping binary files, and tokenizes each as one document.
func tokenizeFiles(ctx context.Context, files []string, tok Tokenizer, maxBytes int64, source string) (*Corpus, error) {
	if tok == nil {
		return nil, errors.New("text data needs a tokenizer")
	}
	sep := separator(tok)
	vocab := tok.VocabSize()
	if vocab > 1<<16 {
		return nil, fmt.Errorf("tokenizer vocabulary %d does not fit uint16 tokens", vocab)
	}
	c := &Corpus{Source: source}
	var used int64
	for _, p := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if maxBytes > 0 && used >= maxBytes {
			break
		}
		text, err := readText(p, maxBytes, used)
		if err != nil {
			return nil, err
		}
		if text == nil { // binary file
			c.Skipped = append(c.Skipped, p)
			continue
		}
		used += int64(len(text))
		if c.Files > 0 {
			c.Tokens = appendTokens(c.Tokens, sep)
		}
		ids := tok.Encode(text)
		for i, id := range ids {
			if id < 0 || id > 0xffff {
				return nil, fmt.Errorf("%s: token %d at position %d does not fit uint16", p, id, i)
			}
		}
		c.Tokens = appendTokens(c.Tokens, ids)
		c.Files++
		c.Paths = append(c.Paths, p)
	}
	if c.Files == 0 {
		return nil, fmt.Errorf("no text files among %d candidates (all contain NUL bytes; token shards must be named *.bin)", len(files))
	}
	if maxBytes > 0 {
		c.Source = fmt.Sprintf("%s (first %d bytes)", source, used)
	}
	return c, nil
}

// readText returns up to maxBytes-used bytes of p (all of it when maxBytes
// <= 0), or nil if the file looks binary (a NUL byte in its first 8 KiB).
func readText(p string, maxBytes, used int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if maxBytes > 0 {
		r = io.LimitReader(f, maxBytes-used)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if bytes.IndexByte(b[:min(len(b), 8<<10)], 0) >= 0 {
		return nil, nil
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// separator is the token(s) placed between documents.
func separator(tok Tokenizer) []int {
	if st, ok := tok.(specialTokenizer); ok {
		if id, ok := st.SpecialID(EndOfText); ok {
			return []int{id}
		}
	}
	return tok.Encode([]byte("\n"))
}

func appendTokens(dst []uint16, ids []int) []uint16 {
	for _, id := range ids {
		dst = append(dst, uint16(id))
	}
	return dst
}

// goRoot finds the Go root: override, runtime.GOROOT(), then `go env GOROOT`.
func goRoot(ctx context.Context, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	//lint:ignore SA1019 the build's GOROOT is the cheapest answer; `go env` is the fallback.
	if r := runtime.GOROOT(); r != "" {
		if _, err := os.Stat(filepath.Join(r, "src")); err == nil {
			return r, nil
		}
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("find GOROOT (runtime.GOROOT is empty): go env GOROOT: %w", err)
	}
	r := strings.TrimSpace(string(out))
	if r == "" {
		return "", errors.New("find GOROOT: go env GOROOT printed nothing")
	}
	return r, nil
}

// Split returns the corpus without its last heldOut fraction (train) and that
// tail (validation), rounded to whole tokens. It is deterministic and shares
// the token memory (train's capacity is capped, so appending to it cannot
// overwrite validation). A heldOut outside [0, 1) (or NaN) is treated as 0:
// everything is training data and validation is empty.
func (c *Corpus) Split(heldOut float64) (train, val *Corpus) {
	if !(heldOut >= 0) || heldOut >= 1 { // also catches NaN
		heldOut = 0
	}
	n := len(c.Tokens)
	nv := int(float64(n)*heldOut + 0.5)
	cut := n - nv
	train = &Corpus{Tokens: c.Tokens[:cut:cut], Source: c.Source + " [train]", Files: c.Files, Paths: c.Paths, Skipped: c.Skipped}
	val = &Corpus{Tokens: c.Tokens[cut:], Source: c.Source + " [validation]", Files: c.Files, Paths: c.Paths, Skipped: c.Skipped}
	return train, val
}

// MaxToken returns the largest token id, or -1 for an empty corpus.
func (c *Corpus) MaxToken() int {
	m := -1
	for _, t := range c.Tokens {
		if int(t) > m {
			m = int(t)
		}
	}
	return m
}

// CheckVocab returns an error naming the first token id >= vocab and its
// position, e.g. when shards were made with a bigger tokenizer than the model.
func (c *Corpus) CheckVocab(vocab int) error {
	for i, t := range c.Tokens {
		if int(t) >= vocab {
			return fmt.Errorf("%s: token id %d at position %d is outside the model vocabulary of %d (max id in data %d)",
				c.Source, t, i, vocab, c.MaxToken())
		}
	}
	return nil
}
