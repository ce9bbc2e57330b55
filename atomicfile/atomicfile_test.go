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
	// CreateTemp makes 0600 files; Write must widen to 0644 (less umask).
	if st.Mode().Perm()&0o600 != 0o600 || st.Mode().Perm()&0o004 == 0 && umaskAllowsOtherRead() {
		t.Fatalf("mode = %v", st.Mode())
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

// umaskAllowsOtherRead reports whether a freshly created 0644 file keeps its
// world-read bit under the current umask.
func umaskAllowsOtherRead() bool {
	f, err := os.CreateTemp("", "umask-probe")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Chmod(0o644); err != nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode().Perm()&0o004 != 0
}
