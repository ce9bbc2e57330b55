package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is a pending replacement of a path, for writers that cannot use the
// Write callback: streaming producers, or formats whose header is patched at
// the end (an llm.c shard's token count). Nothing is visible at the path
// until Commit; Abort (safe to defer) discards the temporary file.
//
//	f, err := atomicfile.Create(path)
//	if err != nil { return err }
//	defer f.Abort()
//	... f.Write(...); f.WriteAt(header, 0) ...
//	return f.Commit()
type File struct {
	path string
	perm os.FileMode // of the committed file: 0644, or 0600 (CreatePrivate)
	tmp  *os.File
	bw   *bufio.Writer
	done bool
}

// Create starts writing a replacement for path in a temporary file in the
// same directory.
func Create(path string) (*File, error) {
	if path == "" {
		return nil, errors.New("atomicfile: empty path")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("atomicfile %s: create temp: %w", path, err)
	}
	return &File{path: path, perm: 0o644, tmp: tmp, bw: bufio.NewWriterSize(tmp, 1<<20)}, nil
}

// CreatePrivate is Create for a file only its owner may read (mode 0600):
// secrets such as a job's token. The temporary file is 0600 from the start.
func CreatePrivate(path string) (*File, error) {
	f, err := Create(path)
	if err == nil {
		f.perm = 0o600
	}
	return f, err
}

// Write appends p (buffered).
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("atomicfile %s: write after Commit or Abort", f.path)
	}
	return f.bw.Write(p)
}

// WriteAt overwrites bytes at off, which must lie within what was already
// written (it flushes the buffer first).
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if f.done {
		return 0, fmt.Errorf("atomicfile %s: write after Commit or Abort", f.path)
	}
	if err := f.bw.Flush(); err != nil {
		return 0, fmt.Errorf("atomicfile %s: flush: %w", f.path, err)
	}
	return f.tmp.WriteAt(p, off)
}

// Commit flushes, fsyncs, and renames the temporary file over path, then
// fsyncs the directory. On error the temporary file is removed.
func (f *File) Commit() (err error) {
	if f.done {
		return fmt.Errorf("atomicfile %s: Commit after Commit or Abort", f.path)
	}
	f.done = true
	name := f.tmp.Name()
	defer func() {
		if err != nil {
			_ = f.tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if err = f.bw.Flush(); err != nil {
		return fmt.Errorf("atomicfile %s: flush: %w", f.path, err)
	}
	if err = f.tmp.Chmod(f.perm); err != nil {
		return fmt.Errorf("atomicfile %s: chmod: %w", f.path, err)
	}
	if err = f.tmp.Sync(); err != nil {
		return fmt.Errorf("atomicfile %s: fsync: %w", f.path, err)
	}
	if err = f.tmp.Close(); err != nil {
		return fmt.Errorf("atomicfile %s: close: %w", f.path, err)
	}
	if err = os.Rename(name, f.path); err != nil {
		return fmt.Errorf("atomicfile %s: rename: %w", f.path, err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("atomicfile %s: fsync dir: %w", f.path, err)
	}
	return nil
}

// Abort discards the temporary file; the path keeps its old contents. It is
// a no-op after Commit, so `defer f.Abort()` is always safe.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.tmp.Close()
	_ = os.Remove(f.tmp.Name())
}
