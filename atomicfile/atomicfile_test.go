package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteBytesCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.bin")
	if err := WriteBytes(p, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(p, []byte("second, longer")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "second, longer" {
		t.Fatalf("contents = %q", got)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// CreateTemp makes 0600 files; Write must widen to 0644.
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode = %v, want 0644", st.Mode())
	}
	assertNoTemps(t, dir, 1)
}

func TestWriteErrorKeepsOldFileAndRemovesTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	if err := WriteBytes(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, func(w io.Writer) error {
		if _, err := w.Write(bytes.Repeat([]byte("x"), 3<<20)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want wrapping boom", err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "old" {
		t.Fatalf("old contents clobbered: %q", got[:min(len(got), 10)])
	}
	assertNoTemps(t, dir, 1)
}

func TestWriteMissingDirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "f")
	if err := WriteBytes(p, []byte("x")); err == nil {
		t.Fatal("expected error for missing directory")
	}
}

func TestWriteBadArgs(t *testing.T) {
	if err := WriteBytes("", nil); err == nil {
		t.Fatal("empty path accepted")
	}
	if err := Write(filepath.Join(t.TempDir(), "f"), nil); err == nil {
		t.Fatal("nil write accepted")
	}
}

// assertNoTemps checks that dir holds exactly want entries (no leftovers).
func assertNoTemps(t *testing.T, dir string, want int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != want {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("dir has %v, want %d entries", names, want)
	}
}

func TestFilePatchHeaderThenCommit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "shard.bin")
	if err := WriteBytes(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.Write([]byte("hdr:??|")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("payload")); err != nil {
		t.Fatal(err)
	}
	// Not visible before Commit.
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Fatalf("visible before commit: %q", got)
	}
	if _, err := f.WriteAt([]byte("07"), 4); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "hdr:07|payload!" {
		t.Fatalf("contents %q", got)
	}
	f.Abort() // no-op after Commit
	if got, _ := os.ReadFile(p); string(got) != "hdr:07|payload!" {
		t.Fatal("Abort after Commit removed the file")
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("write after Commit accepted")
	}
	if err := f.Commit(); err == nil {
		t.Fatal("second Commit accepted")
	}
	assertNoTemps(t, dir, 1)
}

func TestFileAbortKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteBytes(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte("y"), 2<<20))
	f.Abort()
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Fatalf("contents %q", got[:min(len(got), 8)])
	}
	if _, err := f.WriteAt([]byte("z"), 0); err == nil {
		t.Fatal("WriteAt after Abort accepted")
	}
	assertNoTemps(t, dir, 1)
}

func TestWritePrivateIsOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "job.json")
	if err := WriteBytes(p, []byte("public")); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivate(p, []byte(`{"token":"secret"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != `{"token":"secret"}` {
		t.Fatalf("contents %q, %v", got, err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", st.Mode(), err)
	}
	assertNoTemps(t, dir, 1)
}
