package rdma

import (
	"fmt"
	"sync"

	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// regCache registers user buffers once and reuses the registration: the
// collectives send and receive from the same gradient buckets every step,
// and registering (pinning, building NIC page tables) costs far more than
// a copy of a small message.
//
// It is keyed by buffer identity (address of the first byte and length).
// Holding the key keeps the buffer alive, so Go's garbage collector cannot
// hand the memory to another object while it is registered. Entries not in
// use are deregistered least-recently-used first once more than limit
// bytes are registered.
type regCache struct {
	pd     verbs.PD
	access verbs.Access
	limit  int64

	mu           sync.Mutex
	entries      map[regKey]*regEntry
	bytes        int64
	clock        uint64
	hits, misses uint64
}

type regKey struct {
	p *byte
	n int
}

type regEntry struct {
	mr      verbs.MR
	refs    int
	lastUse uint64
}

func newRegCache(pd verbs.PD, access verbs.Access, limit int64) *regCache {
	return &regCache{pd: pd, access: access, limit: limit, entries: make(map[regKey]*regEntry)}
}

// acquire returns a registration covering buf exactly; call release when
// the hardware no longer accesses buf. buf must not be empty.
func (c *regCache) acquire(buf []byte) (verbs.MR, func(), error) {
	k := regKey{&buf[0], len(buf)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	e := c.entries[k]
	if e != nil {
		c.hits++
	} else {
		c.misses++
		mr, err := c.pd.RegMR(buf, c.access)
		if err != nil {
			return nil, nil, fmt.Errorf("register %d-byte buffer: %w", len(buf), err)
		}
		e = &regEntry{mr: mr}
		c.entries[k] = e
		c.bytes += int64(len(buf))
	}
	e.refs++
	e.lastUse = c.clock
	c.evictLocked()
	var once sync.Once
	return e.mr, func() {
		once.Do(func() {
			c.mu.Lock()
			e.refs--
			c.evictLocked()
			c.mu.Unlock()
		})
	}, nil
}

// evictLocked deregisters idle entries, oldest first, while over the limit.
func (c *regCache) evictLocked() {
	for c.bytes > c.limit {
		var oldK regKey
		var old *regEntry
		for k, e := range c.entries {
			if e.refs == 0 && (old == nil || e.lastUse < old.lastUse) {
				oldK, old = k, e
			}
		}
		if old == nil {
			return
		}
		old.mr.Deregister()
		delete(c.entries, oldK)
		c.bytes -= int64(oldK.n)
	}
}

// stats returns the hit and miss counts and the registered bytes.
func (c *regCache) stats() (hits, misses uint64, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.bytes
}

// close deregisters everything.
func (c *regCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		e.mr.Deregister()
		delete(c.entries, k)
	}
	c.bytes = 0
}
