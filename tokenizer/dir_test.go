package tokenizer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSaveDirLoadDir: every BPE kind saves the four files (mode 0644) and
// loads back as the same tokenizer; a tokenizer.json that was loaded is
// written back byte for byte.
func TestSaveDirLoadDir(t *testing.T) {
	sp, err := LoadDir(spDir)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]*BPE{"gpt2": gpt2(t), "trained": trainSmall(t), "sentencepiece": sp, "cl100k": cl100k(t)} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ckpt", "tokenizer")
			if err := SaveDir(dir, tok); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{VocabFile, MergesFile, HFTokenizerFile, ConfigFile} {
				fi, err := os.Stat(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("%s has mode %v", f, fi.Mode().Perm())
				}
			}
			back, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !Same(tok, back) {
				t.Fatalf("reloaded tokenizer differs: %s vs %s", Fingerprint(tok), Fingerprint(back))
			}
			text := []byte("Hello, world! 我们的模型 😀 12345\n\n  x</s><|endoftext|>")
			if a, b := tok.EncodeWithSpecial(text), back.EncodeWithSpecial(text); !equalInts(a, b) {
				t.Fatalf("encodings differ: %s", firstIntDiff(b, a))
			}
			if a, _ := tok.BOS(); a != back.bos {
				t.Errorf("BOS %d, reloaded %d", a, back.bos)
			}
			if a, _ := tok.EOS(); a != back.eos {
				t.Errorf("EOS %d, reloaded %d", a, back.eos)
			}
			if tok.raw != nil {
				got, _ := os.ReadFile(filepath.Join(dir, HFTokenizerFile))
				if !bytes.Equal(got, tok.raw) {
					t.Errorf("tokenizer.json was not written back unchanged")
				}
			}
		})
	}
	if err := SaveDir(t.TempDir(), Bytes{}); err != nil {
		t.Errorf("SaveDir(Bytes): %v", err)
	}
}

// TestLoadDirDetects: tokenizer.json is preferred, vocab.json + merges.txt
// is the fallback, and a directory with neither reports ErrNoTokenizer.
func TestLoadDirDetects(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadDir(dir); !errors.Is(err, ErrNoTokenizer) {
		t.Fatalf("empty dir: %v, want ErrNoTokenizer", err)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrNoTokenizer) {
		t.Fatalf("missing dir: %v", err)
	}
	g := gpt2(t)
	if err := g.Save(dir); err != nil {
		t.Fatal(err)
	}
	// A different tokenizer.json beside GPT-2's pair wins.
	tr := trainSmall(t)
	if err := os.WriteFile(filepath.Join(dir, HFTokenizerFile), tr.hfJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.VocabSize() != tr.VocabSize() {
		t.Fatalf("LoadDir took the pair (vocab %d), not tokenizer.json (%d)", got.VocabSize(), tr.VocabSize())
	}
	if err := os.Remove(filepath.Join(dir, HFTokenizerFile)); err != nil {
		t.Fatal(err)
	}
	if got, err = LoadDir(dir); err != nil || !Same(got, g) {
		t.Fatalf("pair: %v", err)
	}
	// tokenizer_config.json sets BOS and EOS; null means none.
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"bos_token": null, "eos_token": {"content": "<|endoftext|>"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = LoadDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.BOS(); ok {
		t.Errorf("BOS set despite bos_token null")
	}
	if id, ok := got.EOS(); !ok || id != 50256 {
		t.Errorf("EOS = %d, %v", id, ok)
	}
	if Same(got, g) {
		t.Errorf("tokenizers with different BOS are the same")
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"eos_token": "<nope>"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = LoadDir(dir); err == nil {
		t.Errorf("eos_token that is not a token accepted")
	}
}

// TestSame: Same tells tokenizers apart by what they do, not by file.
func TestSame(t *testing.T) {
	g, tr := gpt2(t), trainSmall(t)
	hf, err := parseHF(g.hfJSON())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		a, b Tokenizer
		want bool
	}{
		{g, g, true},
		{g, hf, true}, // GPT-2 from vocab.json+merges.txt and from tokenizer.json
		{g, tr, false},
		{Bytes{}, Bytes{}, true},
		{Bytes{}, g, false},
		{g, cl100k(t), false},
	}
	for i, c := range cases {
		if got := Same(c.a, c.b); got != c.want {
			t.Errorf("case %d: Same = %v (%s vs %s)", i, got, Fingerprint(c.a), Fingerprint(c.b))
		}
	}
}

func TestPaddedVocab(t *testing.T) {
	for _, c := range [][3]int{{50257, 64, 50304}, {256, 64, 256}, {1, 64, 64}, {1000, 64, 1024}, {32000, 64, 32000}, {100, 1, 100}, {0, 64, 0}} {
		if got := PaddedVocab(c[0], c[1]); got != c[2] {
			t.Errorf("PaddedVocab(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}
