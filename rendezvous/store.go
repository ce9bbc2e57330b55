package rendezvous

import (
	"context"
	"fmt"
	"sync"
)

// Store is a write-once-per-key key-value store shared by all ranks of a job.
type Store interface {
	// Set publishes value under key, replacing any earlier value.
	Set(ctx context.Context, key string, value []byte) error
	// Get returns the value of key, waiting until it is set or ctx ends.
	Get(ctx context.Context, key string) ([]byte, error)
}

// Mem is an in-memory Store safe for concurrent use by many goroutines.
type Mem struct {
	mu      sync.Mutex
	values  map[string][]byte
	changed chan struct{} // closed and replaced on every Set
}

// NewMem returns an empty in-memory store.
func NewMem() *Mem {
	return &Mem{values: make(map[string][]byte), changed: make(chan struct{})}
}

// Set implements Store.
func (m *Mem) Set(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rendezvous set %q: %w", key, err)
	}
	m.mu.Lock()
	m.values[key] = append([]byte(nil), value...)
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	return nil
}

// Get implements Store.
func (m *Mem) Get(ctx context.Context, key string) ([]byte, error) {
	for {
		m.mu.Lock()
		v, ok := m.values[key]
		changed := m.changed
		m.mu.Unlock()
		if ok {
			return append([]byte(nil), v...), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("rendezvous get %q: %w", key, ctx.Err())
		}
	}
}

// Prefixed returns a Store that stores every key under prefix, so several
// groups or job epochs can share one store without colliding.
func Prefixed(s Store, prefix string) Store { return prefixed{s, prefix} }

type prefixed struct {
	s      Store
	prefix string
}

func (p prefixed) Set(ctx context.Context, key string, value []byte) error {
	return p.s.Set(ctx, p.prefix+key, value)
}

func (p prefixed) Get(ctx context.Context, key string) ([]byte, error) {
	return p.s.Get(ctx, p.prefix+key)
}
