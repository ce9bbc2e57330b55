package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write creates or replaces path with whatever write produces.
//
// write receives a buffered writer over a temporary file in path's directory.
// If write (or any later step) fails, the temporary file is removed and the
// previous contents of path, if any, are left untouched. The new file gets
// mode 0644 (before umask), like os.Create.
func Write(path string, write func(w io.Writer) error) (err error) {
	if path == "" {
		return errors.New("atomicfile: empty path")
	}
	if write == nil {
		return fmt.Errorf("atomicfile %s: nil write function", path)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile %s: create temp: %w", path, err)
	}
	tmpName := tmp.Name()
	// On any failure below, close and remove the temp file. Close errors are
	// irrelevant then: the first error is the one worth reporting.
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()

	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = write(bw); err != nil {
		return fmt.Errorf("atomicfile %s: write: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("atomicfile %s: flush: %w", path, err)
	}
	// CreateTemp uses 0600; match what os.Create would have given.
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("atomicfile %s: chmod: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("atomicfile %s: fsync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("atomicfile %s: close: %w", path, err)
	}
	if err = os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("atomicfile %s: rename: %w", path, err)
	}
	// The file is in place; a failing directory sync only weakens durability
	// across a power loss, but report it so callers that care can retry.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("atomicfile %s: fsync dir: %w", path, err)
	}
	return nil
}

// WriteBytes atomically replaces path with data.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// syncDir fsyncs a directory so that a rename inside it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return serr
	}
	return cerr
}
