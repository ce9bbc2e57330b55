// Package loopback is an in-process transport.Transport: n ranks in one
// process exchange copies of their buffers through memory. It exists for
// fast tests of the collective algorithms (and of what happens when a
// rank dies: Close one rank and its peers see a *transport.PeerError).
package loopback

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/strand-ml/strand/transport"
)

// world is the shared state of n connected ranks.
type world struct {
	mu       sync.Mutex
	queues   map[key]*queue
	dead     []bool
	failures []*transport.PeerError
	changed  chan struct{} // closed and replaced on every rank failure
}

type key struct {
	src, dst int
	tag      transport.Tag
}

// queue holds messages from src to dst on one tag, oldest first.
type queue struct {
	msgs   [][]byte
	signal chan struct{} // closed and replaced when a message arrives
}

// Transport is one rank's end of an in-process world.
type Transport struct {
	w    *world
	rank int
}

var (
	_ transport.Transport       = (*Transport)(nil)
	_ transport.FailureNotifier = (*Transport)(nil)
)

// New connects n ranks; element r is rank r's transport.
func New(n int) []*Transport {
	w := &world{queues: make(map[key]*queue), dead: make([]bool, n), changed: make(chan struct{})}
	ts := make([]*Transport, n)
	for r := range ts {
		ts[r] = &Transport{w: w, rank: r}
	}
	return ts
}

// Rank implements transport.Transport.
func (t *Transport) Rank() int { return t.rank }

// Size implements transport.Transport.
func (t *Transport) Size() int { return len(t.w.dead) }

func (t *Transport) check(op string, peer int) error {
	if peer < 0 || peer >= len(t.w.dead) || peer == t.rank {
		return &transport.PeerError{Peer: peer, Op: op, Err: fmt.Errorf("invalid peer for rank %d of %d", t.rank, len(t.w.dead))}
	}
	if t.w.dead[t.rank] {
		return &transport.PeerError{Peer: peer, Op: op, Err: errors.New("transport closed")}
	}
	return nil
}

func (w *world) queue(k key) *queue {
	q := w.queues[k]
	if q == nil {
		q = &queue{signal: make(chan struct{})}
		w.queues[k] = q
	}
	return q
}

// Send implements transport.Transport. It copies buf and never blocks.
func (t *Transport) Send(ctx context.Context, peer int, tag transport.Tag, buf []byte) error {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if err := t.check("send", peer); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return &transport.PeerError{Peer: peer, Op: "send", Err: err}
	}
	if t.w.dead[peer] {
		return &transport.PeerError{Peer: peer, Op: "send", Err: errors.New("peer closed")}
	}
	q := t.w.queue(key{t.rank, peer, tag})
	q.msgs = append(q.msgs, append([]byte(nil), buf...))
	close(q.signal)
	q.signal = make(chan struct{})
	return nil
}

// Recv implements transport.Transport.
func (t *Transport) Recv(ctx context.Context, peer int, tag transport.Tag, buf []byte) error {
	k := key{peer, t.rank, tag}
	for {
		t.w.mu.Lock()
		if err := t.check("recv", peer); err != nil {
			t.w.mu.Unlock()
			return err
		}
		q := t.w.queue(k)
		if len(q.msgs) > 0 {
			m := q.msgs[0]
			q.msgs = q.msgs[1:]
			if len(q.msgs) == 0 {
				delete(t.w.queues, k)
			}
			t.w.mu.Unlock()
			if len(m) != len(buf) {
				return &transport.SizeError{Peer: peer, Tag: tag, Want: len(buf), Got: len(m)}
			}
			copy(buf, m)
			return nil
		}
		if t.w.dead[peer] {
			t.w.mu.Unlock()
			return &transport.PeerError{Peer: peer, Op: "recv", Err: errors.New("peer closed")}
		}
		signal, changed := q.signal, t.w.changed
		t.w.mu.Unlock()
		select {
		case <-signal:
		case <-changed:
		case <-ctx.Done():
			return &transport.PeerError{Peer: peer, Op: "recv", Err: ctx.Err()}
		}
	}
}

// Close kills this rank: its peers' calls involving it fail, and the
// failure is announced through PeerFailures.
func (t *Transport) Close() error {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if t.w.dead[t.rank] {
		return nil
	}
	t.w.dead[t.rank] = true
	t.w.failures = append(t.w.failures, &transport.PeerError{Peer: t.rank, Op: "connection", Err: errors.New("peer closed")})
	close(t.w.changed)
	t.w.changed = make(chan struct{})
	return nil
}

// PeerFailures implements transport.FailureNotifier.
func (t *Transport) PeerFailures() ([]*transport.PeerError, <-chan struct{}) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	var out []*transport.PeerError
	for _, f := range t.w.failures {
		if f.Peer != t.rank {
			out = append(out, f)
		}
	}
	return out, t.w.changed
}
