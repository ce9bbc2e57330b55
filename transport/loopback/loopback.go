// Package loopback is an in-process transport.Transport: n ranks in one
// process exchange copies of their buffers through memory. It exists for
// fast tests of the collective algorithms (and of what happens when a
// rank dies: Close one rank and its peers see a *transport.PeerError).
//
// Like the TCP transport it allocates nothing per message once warm:
// message copies come from a per-world pool of power-of-two buffers, the
// per-(sender, receiver, tag) queues are recycled when they empty (a
// collective uses a new tag per call), and a waiting Recv is woken through
// a pooled one-slot channel rather than a channel made per message. So a
// test can assert that a collective's own hot path allocates nothing.
package loopback

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
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

	freeQueues []*queue        // recycled, empty queues
	wakes      []chan struct{} // recycled one-slot wake channels
	bufs       [48][][]byte    // recycled message copies; class k has cap 1<<k
	kept       int             // bytes held in bufs
}

// maxKeep bounds the bytes of message copies a world keeps for reuse.
const maxKeep = 64 << 20

type key struct {
	src, dst int
	tag      transport.Tag
}

// queue holds messages from src to dst on one tag, oldest first, and the
// Recvs waiting for the next one.
type queue struct {
	msgs    [][]byte
	msgsBuf [][]byte        // the largest backing array msgs has had, reused
	waiters []chan struct{} // each gets a token when a message arrives
}

// Transport is one rank's end of an in-process world.
type Transport struct {
	w    *world
	rank int
}

var _ transport.Transport = (*Transport)(nil)

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

// queue returns k's queue, creating (or recycling) it. Call with w.mu held.
func (w *world) queue(k key) *queue {
	q := w.queues[k]
	if q == nil {
		if n := len(w.freeQueues); n > 0 {
			q = w.freeQueues[n-1]
			w.freeQueues = w.freeQueues[:n-1]
		} else {
			q = &queue{}
		}
		q.msgs = q.msgsBuf[:0]
		w.queues[k] = q
	}
	return q
}

// tidy recycles k's queue once nothing is queued or waiting on it.
func (w *world) tidy(k key, q *queue) {
	if len(q.msgs) > 0 || len(q.waiters) > 0 || w.queues[k] != q {
		return
	}
	delete(w.queues, k)
	clear(q.msgsBuf[:cap(q.msgsBuf)])
	q.msgs, q.waiters = nil, q.waiters[:0]
	if len(w.freeQueues) < 64 {
		w.freeQueues = append(w.freeQueues, q)
	}
}

// getBuf returns a buffer of n bytes from the pool (nil for n = 0).
func (w *world) getBuf(n int) []byte {
	if n == 0 {
		return nil
	}
	k := bits.Len(uint(n - 1))
	if k >= len(w.bufs) {
		return make([]byte, n)
	}
	if m := len(w.bufs[k]); m > 0 {
		b := w.bufs[k][m-1]
		w.bufs[k] = w.bufs[k][:m-1]
		w.kept -= cap(b)
		return b[:n]
	}
	return make([]byte, n, 1<<k)
}

// putBuf returns a getBuf buffer to the pool.
func (w *world) putBuf(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 || w.kept+c > maxKeep {
		return
	}
	k := bits.Len(uint(c - 1))
	if k >= len(w.bufs) {
		return
	}
	w.bufs[k] = append(w.bufs[k], b[:c])
	w.kept += c
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
	m := t.w.getBuf(len(buf))
	copy(m, buf)
	q := t.w.queue(key{t.rank, peer, tag})
	q.msgs = append(q.msgs, m)
	if cap(q.msgs) > cap(q.msgsBuf) { // append moved it to a new array
		q.msgsBuf = q.msgs[:0]
	}
	for _, wake := range q.waiters {
		select {
		case wake <- struct{}{}:
		default: // already has a token
		}
	}
	return nil
}

// Caps implements transport.Transport: a loopback transport notices a
// closed rank at once; it posts, chunks and batches through the adapters
// (a Send never waits for its receiver, so a posted receive may run late).
func (t *Transport) Caps() transport.Caps { return transport.Caps{Notifies: true} }

// SendMulti implements transport.Transport with one Send each.
func (t *Transport) SendMulti(ctx context.Context, peer int, tag transport.Tag, bufs [][]byte) error {
	return transport.SendEach(t, ctx, peer, tag, bufs)
}

// PostRecv implements transport.Transport: the receive runs at Wait.
func (t *Transport) PostRecv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) transport.PostedRecv {
	return transport.LazyRecv(t, ctx, peer, tag, buf, opts...)
}

// PostRecvChunks implements transport.Transport through a staging buffer.
func (t *Transport) PostRecvChunks(ctx context.Context, peer int, tag transport.Tag, n int, sink transport.ChunkSink, opts ...transport.RecvOpt) transport.PostedRecv {
	return transport.StagedChunks(t, ctx, peer, tag, n, sink, opts...)
}

// Recv implements transport.Transport (options have no effect).
func (t *Transport) Recv(ctx context.Context, peer int, tag transport.Tag, buf []byte, _ ...transport.RecvOpt) error {
	w := t.w
	k := key{peer, t.rank, tag}
	var wake chan struct{} // this Recv's wake channel while it waits
	defer func() {
		if wake != nil {
			w.mu.Lock()
			select { // drop a token that came after we stopped waiting
			case <-wake:
			default:
			}
			w.wakes = append(w.wakes, wake)
			w.mu.Unlock()
		}
	}()
	for {
		w.mu.Lock()
		if err := t.check("recv", peer); err != nil {
			w.mu.Unlock()
			return err
		}
		q := w.queue(k)
		if len(q.msgs) > 0 {
			m := q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			w.tidy(k, q)
			var err error
			if len(m) != len(buf) {
				err = &transport.SizeError{Peer: peer, Tag: tag, Want: len(buf), Got: len(m)}
			} else {
				copy(buf, m)
			}
			w.putBuf(m)
			w.mu.Unlock()
			return err
		}
		if w.dead[peer] {
			w.tidy(k, q)
			w.mu.Unlock()
			return &transport.PeerError{Peer: peer, Op: "recv", Err: errors.New("peer closed")}
		}
		if wake == nil {
			if n := len(w.wakes); n > 0 {
				wake = w.wakes[n-1]
				w.wakes = w.wakes[:n-1]
			} else {
				wake = make(chan struct{}, 1)
			}
		}
		q.waiters = append(q.waiters, wake)
		changed := w.changed
		w.mu.Unlock()
		var err error
		select {
		case <-wake:
		case <-changed:
		case <-ctx.Done():
			err = &transport.PeerError{Peer: peer, Op: "recv", Err: ctx.Err()}
		}
		w.mu.Lock()
		// q is still k's queue: a queue with waiters is never recycled.
		for i, c := range q.waiters {
			if c == wake {
				q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
				break
			}
		}
		if err != nil {
			w.tidy(k, q)
		}
		w.mu.Unlock()
		if err != nil {
			return err
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

// PeerFailures implements transport.Transport.
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
