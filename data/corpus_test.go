package data

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// byteTok is a byte-level tokenizer (id = byte), vocab 256.
type byteTok struct{}

func (byteTok) Encode(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}
func (byteTok) VocabSize() int { return 256 }

// eotTok is byteTok plus an <|endoftext|> special token with id 256.
type eotTok struct{ byteTok }

func (eotTok) VocabSize() int { return 257 }
func (eotTok) SpecialID(s string) (int, bool) {
	if s == EndOfText {
		return 256, true
	}
	return 0, false
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func toks(s string) []uint16 {
	out := make([]uint16, len(s))
	for i := range s {
		out[i] = uint16(s[i])
	}
	return out
}

func TestLoadTextDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.txt"), "BB")
	writeFile(t, filepath.Join(dir, "a", "z.txt"), "AZ")
	writeFile(t, filepath.Join(dir, "a.txt"), "A")
	writeFile(t, filepath.Join(dir, "testdata", "skip.txt"), "no")
	writeFile(t, filepath.Join(dir, ".git", "skip"), "no")
	writeFile(t, filepath.Join(dir, "bin.dat"), "x\x00y")
	writeFile(t, filepath.Join(dir, "_c.txt"), "C")
	ctx := context.Background()

	c, err := Load(ctx, dir, byteTok{}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Sorted full paths: _c.txt, a.txt, a/z.txt, b.txt; newline between documents.
	if got, want := c.Tokens, toks("C\nA\nAZ\nBB"); !slices.Equal(got, want) {
		t.Fatalf("tokens %q, want %q", string(u16s(got)), string(u16s(want)))
	}
	if c.Files != 4 {
		t.Fatalf("files %d", c.Files)
	}

	// With an end-of-text token, documents are separated by it.
	c, err = Load(ctx, dir, eotTok{}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{'C', 256, 'A', 256, 'A', 'Z', 256, 'B', 'B'}
	if !slices.Equal(c.Tokens, want) {
		t.Fatalf("eot tokens %v, want %v", c.Tokens, want)
	}

	// MaxBytes cuts in the middle of the file that crosses it.
	c, err = Load(ctx, dir, byteTok{}, LoadOptions{MaxBytes: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(u16s(c.Tokens)); got != "C\nA" {
		t.Fatalf("capped corpus %q", got)
	}

	// A glob of text files, a single text file.
	c, err = Load(ctx, filepath.Join(dir, "*.txt"), byteTok{}, LoadOptions{})
	if err != nil || string(u16s(c.Tokens)) != "C\nA\nBB" {
		t.Fatalf("glob: %v %q", err, u16s(c.Tokens))
	}
	c, err = Load(ctx, filepath.Join(dir, "b.txt"), byteTok{}, LoadOptions{MaxTokens: 1})
	if err != nil || string(u16s(c.Tokens)) != "B" || c.Files != 1 {
		t.Fatalf("file: %v %+v", err, c)
	}
}

func u16s(t []uint16) []byte {
	out := make([]byte, len(t))
	for i, v := range t {
		out[i] = byte(v)
	}
	return out
}

func TestLoadShards(t *testing.T) {
	dir := t.TempDir()
	for i, ts := range [][]uint16{{1, 2}, {3}, {4, 5, 6}} {
		if err := WriteShard(filepath.Join(dir, "train_"+string(rune('0'+i))+".bin"), ts); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Load(context.Background(), filepath.Join(dir, "train_*.bin"), nil, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Tokens, []uint16{1, 2, 3, 4, 5, 6}) || c.Files != 3 {
		t.Fatalf("%+v", c)
	}
	c, err = Load(context.Background(), filepath.Join(dir, "train_2.bin"), nil, LoadOptions{})
	if err != nil || !slices.Equal(c.Tokens, []uint16{4, 5, 6}) {
		t.Fatalf("%v %+v", err, c)
	}
	// A directory of shards loads them all, in order.
	c, err = Load(context.Background(), dir, nil, LoadOptions{MaxTokens: 5})
	if err != nil || !slices.Equal(c.Tokens, []uint16{1, 2, 3, 4, 5}) || c.Files != 3 {
		t.Fatalf("shard dir: %v %+v", err, c)
	}
	// A directory with a shard and a text file is text; the shard is skipped
	// as binary.
	writeFile(t, filepath.Join(dir, "notes.txt"), "hi")
	c, err = Load(context.Background(), dir, byteTok{}, LoadOptions{})
	if err != nil || string(u16s(c.Tokens)) != "hi" {
		t.Fatalf("mixed dir: %v %+v", err, c)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "x.txt"), "hello")
	if err := WriteShard(filepath.Join(dir, "x.bin"), []uint16{1}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "bad.bin"), strings.Repeat("\x01", 2000))
	writeFile(t, filepath.Join(dir, "empty.txt"), "")
	ctx := context.Background()
	cases := map[string]string{
		filepath.Join(dir, "x.*"):       "mix",
		filepath.Join(dir, "nothing*"):  "no files",
		filepath.Join(dir, "missing"):   "no such file",
		filepath.Join(dir, "bad.bin"):   "wrong magic",
		filepath.Join(dir, "empty.txt"): "no tokens",
		filepath.Join(dir, "[.txt"):     "glob",
	}
	for spec, want := range cases {
		_, err := Load(ctx, spec, byteTok{}, LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s): %v, want %q", spec, err, want)
		}
	}
	if _, err := Load(ctx, filepath.Join(dir, "x.txt"), nil, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "tokenizer") {
		t.Errorf("nil tokenizer: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Load(cctx, dir, byteTok{}, LoadOptions{}); err == nil {
		t.Error("cancelled context ignored")
	}
}

func TestLoadDefaultGoSources(t *testing.T) {
	// A fake GOROOT pins down ordering, the .go filter and testdata exclusion.
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "src", "b", "b.go"), "package b")
	writeFile(t, filepath.Join(root, "src", "a.go"), "package a")
	writeFile(t, filepath.Join(root, "src", "a", "testdata", "t.go"), "package t")
	writeFile(t, filepath.Join(root, "src", "a", "README"), "no")
	writeFile(t, filepath.Join(root, "src", "_skip", "x.go"), "package skip")
	c, err := Load(context.Background(), "", byteTok{}, LoadOptions{GoRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(u16s(c.Tokens)); got != "package a\npackage b" {
		t.Fatalf("default corpus %q", got)
	}

	// The real toolchain tree, capped small so the test stays fast.
	c, err = Load(context.Background(), "", byteTok{}, LoadOptions{MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if c.Files == 0 || len(c.Tokens) < 64<<10 || len(c.Tokens) > 64<<10+c.Files {
		t.Fatalf("real GOROOT corpus: %d files %d tokens", c.Files, len(c.Tokens))
	}
	if !strings.Contains(string(u16s(c.Tokens[:2000])), "package ") {
		t.Fatalf("does not look like Go source: %q", u16s(c.Tokens[:200]))
	}
}

func TestSplitAndVocab(t *testing.T) {
	c := &Corpus{Tokens: []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, Source: "t"}
	tr, va := c.Split(0.2)
	if !slices.Equal(tr.Tokens, []uint16{0, 1, 2, 3, 4, 5, 6, 7}) || !slices.Equal(va.Tokens, []uint16{8, 9}) {
		t.Fatalf("split %v | %v", tr.Tokens, va.Tokens)
	}
	// Appending to train must not overwrite validation.
	_ = append(tr.Tokens, 99)
	if va.Tokens[0] != 8 {
		t.Fatal("train aliases validation capacity")
	}
	if tr, va := c.Split(0); len(tr.Tokens) != 10 || len(va.Tokens) != 0 {
		t.Fatal("split 0")
	}
	if c.MaxToken() != 9 || (&Corpus{}).MaxToken() != -1 {
		t.Fatal("MaxToken")
	}
	if err := c.CheckVocab(10); err != nil {
		t.Fatal(err)
	}
	err := c.CheckVocab(8)
	if err == nil || !strings.Contains(err.Error(), "token id 8 at position 8") {
		t.Fatalf("CheckVocab: %v", err)
	}
}
