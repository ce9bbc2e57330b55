// Package dirstore is a rendezvous.Store kept in a directory that several
// processes on one machine share: the store that tests and `strand bench
// collective` use to start local multi-process jobs without a coordinator.
//
// Set writes the value to a temporary file and renames it into place, so a
// reader sees either nothing or the whole value. Get polls (every 2 ms at
// first, backing off to 50 ms) until the file exists or ctx ends.
package dirstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/strand-ml/strand/rendezvous"
)

// Store is a rendezvous.Store over a directory.
type Store struct{ dir string }

var _ rendezvous.Store = Store{}

// New returns a store in dir, which must exist.
func New(dir string) Store { return Store{dir: dir} }

// path maps any key to a flat, safe file name.
func (s Store) path(key string) string {
	return filepath.Join(s.dir, "k-"+hex.EncodeToString([]byte(key)))
}

// Set implements rendezvous.Store.
func (s Store) Set(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dirstore set %q: %w", key, err)
	}
	f, err := os.CreateTemp(s.dir, "tmp-")
	if err != nil {
		return fmt.Errorf("dirstore set %q: %w", key, err)
	}
	_, werr := f.Write(value)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("dirstore set %q: %w", key, err)
	}
	if err := os.Rename(f.Name(), s.path(key)); err != nil {
		return fmt.Errorf("dirstore set %q: %w", key, err)
	}
	return nil
}

// Get implements rendezvous.Store.
func (s Store) Get(ctx context.Context, key string) ([]byte, error) {
	wait := 2 * time.Millisecond
	for {
		b, err := os.ReadFile(s.path(key))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("dirstore get %q: %w", key, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dirstore get %q: %w", key, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
