package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/tokenizer"
	"github.com/strand-ml/strand/tokenizer/tokentest"
)

// TestTokenizerTrainAndTokenize runs both subcommands end to end and reads
// the shard back with package data (an independent reader of the format).
func TestTokenizerTrainAndTokenize(t *testing.T) {
	dir := t.TempDir()
	text := append(tokentest.Mixed(61, 200_000), "<|endoftext|>the end"...)
	textPath := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(textPath, text, 0o644); err != nil {
		t.Fatal(err)
	}
	tokDir := filepath.Join(dir, "tok")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"tokenizer", "train", "--data", textPath, "--vocab", "700", "--out", tokDir}, &out, &errb); code != 0 {
		t.Fatalf("train exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "trained 700 tokens") {
		t.Errorf("train output %q", out.String())
	}
	for _, f := range []string{"vocab.json", "merges.txt", "tokenizer.json"} {
		fi, err := os.Stat(filepath.Join(tokDir, f))
		if err != nil {
			t.Fatalf("train wrote no %s: %v", f, err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s is %v, want -rw-r--r--", f, fi.Mode().Perm())
		}
	}
	tok, err := tokenizer.Load(tokDir)
	if err != nil {
		t.Fatal(err)
	}
	shard := filepath.Join(dir, "train.bin")
	out.Reset()
	if code := run(context.Background(), []string{"tokenize", "--tokenizer", tokDir, "--data", textPath, "--out", shard, "--eot"}, &out, &errb); code != 0 {
		t.Fatalf("tokenize exit %d: %s", code, errb.String())
	}
	got, err := data.ReadShard(shard)
	if err != nil {
		t.Fatal(err)
	}
	eot, _ := tok.SpecialID("<|endoftext|>")
	want := append([]int{eot}, tok.EncodeWithSpecial(text)...)
	if len(got) != len(want) {
		t.Fatalf("shard has %d tokens, want %d", len(got), len(want))
	}
	for i := range want {
		if int(got[i]) != want[i] {
			t.Fatalf("token %d: %d, want %d", i, got[i], want[i])
		}
	}
	if !strings.Contains(out.String(), fmt.Sprintf("wrote %d tokens", len(want))) {
		t.Errorf("tokenize output %q", out.String())
	}
	if fi, err := os.Stat(shard); err != nil || fi.Mode().Perm()&0o044 == 0 {
		t.Errorf("shard mode: %v %v", fi.Mode(), err)
	}
}

func TestTokenizeRefusesLargeVocab(t *testing.T) {
	dir := t.TempDir()
	tokens := make([][]byte, 0, 70000)
	for b := range 256 {
		tokens = append(tokens, []byte{byte(b)})
	}
	var special []int
	for i := len(tokens); i < 70000; i++ {
		special = append(special, i)
		tokens = append(tokens, []byte(fmt.Sprintf("<|s%d|>", i)))
	}
	big, err := tokenizer.NewBPE(tokens, nil, special)
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Save(filepath.Join(dir, "tok")); err != nil {
		t.Fatal(err)
	}
	textPath := filepath.Join(dir, "t.txt")
	os.WriteFile(textPath, []byte("hello"), 0o644)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"tokenize", "--tokenizer", filepath.Join(dir, "tok"), "--data", textPath, "--out", filepath.Join(dir, "x.bin")}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "uint16") {
		t.Fatalf("exit %d, stderr %q: want a uint16 error", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "x.bin")); err == nil {
		t.Error("a shard was written anyway")
	}
}

func TestTokenizerCommandsBadInput(t *testing.T) {
	dir := t.TempDir()
	textPath := filepath.Join(dir, "t.txt")
	os.WriteFile(textPath, []byte("hello hello"), 0o644)
	binDir := filepath.Join(dir, "bin")
	os.Mkdir(binDir, 0o755)
	os.WriteFile(filepath.Join(binDir, "x.dat"), []byte{1, 0, 2}, 0o644)
	outDir := filepath.Join(dir, "tok")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tokenizer", "train", "--vocab", "300", "--out", dir}, 2, "--data"},
		{[]string{"tokenizer", "train", "--data", textPath, "--out", dir}, 2, "--vocab"},
		{[]string{"tokenizer", "train", "--data", textPath, "--vocab", "100", "--out", dir}, 2, "below 256"},
		{[]string{"tokenizer", "train", "--data", filepath.Join(dir, "missing"), "--vocab", "300", "--out", outDir}, 1, "no such file"},
		{[]string{"tokenizer", "train", "--data", binDir, "--vocab", "300", "--out", outDir}, 1, "no text files"},
		{[]string{"tokenizer", "train", "--data", textPath, "--vocab", "300", "--out", dir}, 2, "is not empty (bin, t.txt)"},
		{[]string{"tokenize", "--tokenizer", dir, "--data", textPath, "--out", filepath.Join(dir, "a.bin")}, 1, "neither"},
		{[]string{"tokenize", "--data", textPath, "--out", "x.bin"}, 2, "--tokenizer"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d stderr %q; want exit %d mentioning %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

// TestTokenizerTrainOnDirectory: tokenizer train --data takes a directory
// or glob as strand train --data does (text files in sorted order, joined
// by newlines; binary files skipped and named) and learns what it learns
// from those files concatenated.
func TestTokenizerTrainOnDirectory(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	a, b := tokentest.Mixed(3, 20_000), tokentest.Mixed(4, 20_000)
	os.WriteFile(filepath.Join(src, "a.txt"), a, 0o644)
	os.WriteFile(filepath.Join(src, "b.md"), b, 0o644)
	os.WriteFile(filepath.Join(src, "c.bin"), []byte{0, 1, 2, 3}, 0o644)
	joined := filepath.Join(dir, "joined.txt")
	os.WriteFile(joined, append(append(append([]byte(nil), a...), '\n'), b...), 0o644)
	train := func(data, out string) (string, string) {
		var o, e bytes.Buffer
		if code := run(context.Background(), []string{"tokenizer", "train", "--data", data, "--vocab", "400", "--out", out}, &o, &e); code != 0 {
			t.Fatalf("--data %s: exit %d: %s", data, code, e.String())
		}
		merges, err := os.ReadFile(filepath.Join(out, "merges.txt"))
		if err != nil {
			t.Fatal(err)
		}
		return string(merges), e.String()
	}
	want, _ := train(joined, filepath.Join(dir, "t0"))
	for i, spec := range []string{src, filepath.Join(src, "[ab]*")} {
		got, log := train(spec, filepath.Join(dir, fmt.Sprint("t", i+1)))
		if got != want {
			t.Errorf("--data %s learned other merges than the joined file", spec)
		}
		if !strings.Contains(log, "data: 2 files: 1 .md ("+filepath.Join(src, "b.md")+"), 1 .txt") {
			t.Errorf("--data %s: no note of the files used:\n%s", spec, log)
		}
		if i == 0 && !strings.Contains(log, "skipped 1 binary: "+filepath.Join(src, "c.bin")) {
			t.Errorf("--data %s: no note of the skipped file:\n%s", spec, log)
		}
	}
}
