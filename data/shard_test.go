package data

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestShardRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, toks := range [][]uint16{{}, {0}, {1, 65535, 42, 7}, make([]uint16, 100_000)} {
		p := filepath.Join(dir, "s.bin")
		if err := WriteShard(p, toks); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(p)
		if st.Size() != int64(1024+2*len(toks)) {
			t.Fatalf("size %d for %d tokens", st.Size(), len(toks))
		}
		got, err := ReadShard(p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, toks) {
			t.Fatalf("round trip of %d tokens differs", len(toks))
		}
	}
}

func TestShardLayoutMatchesLLMC(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.bin")
	if err := WriteShard(p, []uint16{0x0102, 0xfffe}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	hdr := func(i int) int32 { return int32(binary.LittleEndian.Uint32(b[4*i:])) }
	if hdr(0) != 20240520 || hdr(1) != 1 || hdr(2) != 2 {
		t.Fatalf("header %d %d %d", hdr(0), hdr(1), hdr(2))
	}
	for i := 3; i < 256; i++ {
		if hdr(i) != 0 {
			t.Fatalf("header word %d = %d, want 0", i, hdr(i))
		}
	}
	if got := b[1024:]; !slices.Equal(got, []byte{0x02, 0x01, 0xfe, 0xff}) {
		t.Fatalf("tokens % x", got)
	}
}

func TestReadShardErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.bin")
	if err := WriteShard(good, []uint16{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	img, _ := os.ReadFile(good)
	mutate := func(name string, f func([]byte) []byte) string {
		b := f(slices.Clone(img))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		path string
		want []string
	}{
		{mutate("magic.bin", func(b []byte) []byte { binary.LittleEndian.PutUint32(b, 12345); return b }),
			[]string{"magic.bin", "wrong magic 12345", "20240520"}},
		{mutate("version.bin", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4:], 2); return b }),
			[]string{"version.bin", "version 2"}},
		{mutate("trunc.bin", func(b []byte) []byte { return b[:len(b)-2] }),
			[]string{"trunc.bin", "truncated", "3 tokens", "holds 2"}},
		{mutate("odd.bin", func(b []byte) []byte { return b[:len(b)-1] }),
			[]string{"odd.bin", "whole number"}},
		{mutate("extra.bin", func(b []byte) []byte { return append(b, 9, 9) }),
			[]string{"extra.bin", "trailing"}},
		{mutate("short.bin", func(b []byte) []byte { return b[:100] }),
			[]string{"short.bin", "shorter than"}},
		{mutate("neg.bin", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 0xffffffff); return b }),
			[]string{"neg.bin", "negative"}},
		{filepath.Join(dir, "missing.bin"), []string{"missing.bin"}},
	}
	for _, c := range cases {
		_, err := ReadShard(c.path)
		if err == nil {
			t.Errorf("%s: accepted", c.path)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", filepath.Base(c.path), err, w)
			}
		}
	}
}

func TestShardWriterStreaming(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stream.bin")
	if err := WriteShard(p, []uint16{9}); err != nil { // an old shard to replace
		t.Fatal(err)
	}
	w, err := CreateShard(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var want []uint16
	for i := 0; i < 50; i++ {
		chunk := make([]int, 1000)
		for j := range chunk {
			chunk[j] = (i*1000 + j) % 65536
			want = append(want, uint16(chunk[j]))
		}
		if err := w.WriteInts(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteInts([]int{5, 70000}); err == nil || !strings.Contains(err.Error(), "70000") {
		t.Fatalf("out-of-range id: %v", err)
	}
	if w.Count() != 50000 {
		t.Fatalf("count %d", w.Count())
	}
	if got, _ := ReadShard(p); !slices.Equal(got, []uint16{9}) {
		t.Fatal("new shard visible before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadShard(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatal("streamed shard differs")
	}

	// Abort leaves the previous shard.
	w, err = CreateShard(p)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]uint16{1, 2, 3})
	w.Abort()
	if got, _ := ReadShard(p); len(got) != 50000 {
		t.Fatalf("aborted write changed the shard (%d tokens)", len(got))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("leftover files: %d entries", len(ents))
	}
}

// llmcTokens are the tokens of testdata/llmc_reference.bin, written by
// testdata/make_llmc_shard.py with numpy the way llm.c does.
var llmcTokens = []uint16{50256, 0, 1, 2, 65535, 12345, 50256, 7}

func TestReadLLMCReference(t *testing.T) {
	got, err := ReadShard("testdata/llmc_reference.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, llmcTokens) {
		t.Fatalf("tokens %v, want %v", got, llmcTokens)
	}
}

// TestNumpyReadsOurShard has numpy check a shard we wrote (reversed tokens,
// so a reader that ignored the data could not pass). Skips without numpy.
func TestNumpyReadsOurShard(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	rev := slices.Clone(llmcTokens)
	slices.Reverse(rev)
	p := filepath.Join(t.TempDir(), "ours.bin")
	if err := WriteShard(p, rev); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "testdata/make_llmc_shard.py", "check", p).CombinedOutput()
	if err != nil && strings.Contains(string(out), "No module named 'numpy'") {
		t.Skip("python3 has no numpy")
	}
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("numpy check: %v\n%s", err, out)
	}
}
