package atomicfile

import (
	"fmt"
	"io"
	"os"
)

// Write creates or replaces path with whatever write produces.
//
// write receives a buffered writer over a temporary file in path's directory.
// If write (or any later step) fails, the temporary file is removed and the
// previous contents of path, if any, are left untouched. The new file gets
// mode 0644.
func Write(path string, write func(w io.Writer) error) error {
	if write == nil {
		return fmt.Errorf("atomicfile %s: nil write function", path)
	}
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := write(f.bw); err != nil {
		return fmt.Errorf("atomicfile %s: write: %w", path, err)
	}
	return f.Commit()
}

// WriteBytes atomically replaces path with data.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WritePrivate atomically replaces path with data readable by its owner
// only (mode 0600).
func WritePrivate(path string, data []byte) error {
	f, err := CreatePrivate(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("atomicfile %s: write: %w", path, err)
	}
	return f.Commit()
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
