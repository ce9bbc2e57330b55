package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strand-ml/strand/transport"
)

// peer is this rank's end of one segment.
type peer struct {
	t       *Transport
	rank    int
	mem     []byte
	pid     int   // the peer's process
	out, in *ring // this rank writes out, reads in

	myState, peerState     *atomic.Uint32
	myCulprit, peerCulprit *atomic.Int32

	txLock chan struct{} // one writer at a time (select-able, so a waiting Send honours ctx)
	txHead uint64        // under txLock: the writer's head

	// pumpLock is held by whichever goroutine moves bytes out of the
	// in-ring (a waiting receive, or the bell goroutine draining); the
	// pump never blocks, so holding it is short.
	pumpLock chan struct{}
	rxTail   uint64   // under pumpLock
	cur      inflight // under pumpLock

	mu         sync.Mutex                  // queues, freeQueues
	queues     map[transport.Tag]*tagQueue // per tag: receives waiting, or messages waiting
	freeQueues []*tagQueue                 // empty queues kept for reuse (a call uses a new tag)

	// conn is the pair's doorbell: one byte wakes the other side's
	// parked waiters (bell reader goroutine), its end means the peer's
	// process is gone (or closed its transport).
	conn  *net.UnixConn
	sigMu sync.Mutex
	sig   chan struct{} // closed and replaced at every doorbell or state change

	dead     chan struct{} // closed when the peer failed
	deadOnce sync.Once
	deadErr  atomic.Pointer[transport.PeerError]
	leftSeen atomic.Bool

	spinFor atomic.Int64 // how long a receive polls before parking (see waitData)

	// Doorbell accounting for State (hang diagnosis): bytes this side
	// wrote, bytes its bell goroutine read, and where that goroutine is.
	rung, heard atomic.Uint64
	bellAt      atomic.Int32 // bellReading, bellSignalling, bellPumping
}

// Where a bell goroutine is (peer.bellAt).
const (
	bellReading = iota
	bellSignalling
	bellPumping
)

// inflight is the message the pump is moving out of the ring.
type inflight struct {
	active  bool
	tag     transport.Tag
	n, q, d uint64 // length, payload start, bytes delivered
	post    *post  // its receive, or
	park    *park  // a buffer holding it until a receive is posted, or
	discard bool   // nobody (a size mismatch or an abandoned receive)
}

// maxMessage bounds a message's announced length (as the TCP
// transport's default MaxMessage).
const maxMessage = 16 << 30

// park is a message that arrived before its receive was posted.
type park struct{ buf []byte }

// getPark returns a park for n bytes from the transport's pool of
// power-of-two buffers.
func (t *Transport) getPark(n int) *park {
	k := bits.Len(uint(max(n, 1) - 1))
	t.poolMu.Lock()
	if m := len(t.freeParks[k]); m > 0 {
		pk := t.freeParks[k][m-1]
		t.freeParks[k][m-1] = nil
		t.freeParks[k] = t.freeParks[k][:m-1]
		t.keptParks -= cap(pk.buf)
		t.poolMu.Unlock()
		pk.buf = pk.buf[:n]
		return pk
	}
	t.poolMu.Unlock()
	return &park{buf: make([]byte, n, 1<<k)}
}

// putPark returns a park to the pool, which keeps at most 64 MiB.
func (t *Transport) putPark(pk *park) {
	c := cap(pk.buf)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	t.poolMu.Lock()
	if t.keptParks+c <= 64<<20 {
		k := bits.Len(uint(c - 1))
		t.freeParks[k] = append(t.freeParks[k], pk)
		t.keptParks += c
	}
	t.poolMu.Unlock()
}

func (t *Transport) newPeer(p int, mem []byte, lo bool, conn *net.UnixConn) *peer {
	me, other := 1, 0 // sides: 0 = lo, 1 = hi
	outRing, inRing := 1, 0
	if lo {
		me, other = 0, 1
		outRing, inRing = 0, 1
	}
	ringCap := t.cfg.RingBytes
	pe := &peer{
		t: t, rank: p, mem: mem,
		pid:         int(u32(mem, offPids+4*other).Load()),
		out:         newRing(mem, outRing, ringCap),
		in:          newRing(mem, inRing, ringCap),
		myState:     u32(mem, offState+64*me),
		peerState:   u32(mem, offState+64*other),
		myCulprit:   i32(mem, offState+64*me+4),
		peerCulprit: i32(mem, offState+64*other+4),
		txLock:      make(chan struct{}, 1),
		pumpLock:    make(chan struct{}, 1),
		queues:      make(map[transport.Tag]*tagQueue),
		dead:        make(chan struct{}),
		conn:        conn,
		sig:         make(chan struct{}),
	}
	pe.spinFor.Store(int64(max(t.cfg.Spin, 0)))
	return pe
}

// signal wakes every goroutine of this rank parked on the peer.
func (pe *peer) signal() {
	pe.sigMu.Lock()
	close(pe.sig)
	pe.sig = make(chan struct{})
	pe.sigMu.Unlock()
}

// signalled returns the channel the next signal closes.
func (pe *peer) signalled() <-chan struct{} {
	pe.sigMu.Lock()
	defer pe.sigMu.Unlock()
	return pe.sig
}

// Doorbell bytes.
const (
	bellData  = 1 // published bytes: wake parked receives
	bellSpace = 2 // consumed bytes: wake a parked sender
	bellDrain = 3 // a sender is stuck on a full ring nobody reads: park what is in it
)

var bellBytes = [4]byte{0, bellData, bellSpace, bellDrain}

// ring rings the peer's doorbell (best effort: a failed write means the
// peer is gone, which the bell reader reports).
func (pe *peer) ring(b byte) {
	pe.rung.Add(1)
	_, _ = pe.conn.Write(bellBytes[b : b+1])
}

// markDead fails the peer: every pending and future call on it returns a
// *transport.PeerError naming it, and the failure is announced.
func (pe *peer) markDead(cause error) {
	pe.deadOnce.Do(func() {
		e := &transport.PeerError{Peer: pe.rank, Op: "connection", Err: cause}
		// Announce before waking anyone: a woken call that asks
		// PeerFailures must find this failure (and name the rank).
		pe.t.noteFailure(e)
		pe.deadErr.Store(e)
		close(pe.dead)
		pe.mu.Lock()
		for tag, q := range pe.queues {
			for _, p := range q.posts {
				p.complete(&transport.PeerError{Peer: pe.rank, Op: "recv", Err: cause})
			}
			clear(q.posts)
			q.posts = q.posts[:0]
			pe.tidy(tag, q)
		}
		pe.mu.Unlock()
		pe.signal()
	})
}

// failure is the error of an op on a dead peer, or nil.
func (pe *peer) failure(op string) error {
	if e := pe.deadErr.Load(); e != nil {
		return &transport.PeerError{Peer: pe.rank, Op: op, Err: e.Err}
	}
	if pe.peerState.Load() == stateCrashed {
		pe.markDead(errors.New("peer aborted its transport"))
		return pe.failure(op)
	}
	return nil
}

// sawLeft handles the peer's goodbye: the rank it names as the reason,
// if any, is announced failed before the caller reports ErrPeerLeft.
func (pe *peer) sawLeft() {
	if pe.leftSeen.Swap(true) {
		return
	}
	if c := int(pe.peerCulprit.Load()); c >= 0 {
		pe.t.noteFailure(&transport.PeerError{Peer: c, Op: "connection", Err: fmt.Errorf("reported failed by rank %d's goodbye", pe.rank)})
	}
}

// sendable is nil while the peer can still receive.
func (pe *peer) sendable() error {
	if err := pe.failure("send"); err != nil {
		return err
	}
	if pe.peerState.Load() == stateLeft {
		pe.sawLeft()
		return leftError("send", pe.rank)
	}
	if pe.myState.Load() != stateAlive {
		return &transport.PeerError{Peer: pe.rank, Op: "send", Err: errors.New("transport closed")}
	}
	return nil
}

// --- sending ---

// finishGrace bounds how long a send whose context ended keeps writing a
// message it has begun (the receiver must never see half a message).
const finishGrace = time.Second

// untilGrace returns a context that ends finishGrace after ctx does
// (with ctx's cause), for finishing a message already begun: while ctx
// lives, a long message may take as long as its receiver needs. Call
// the returned stop when the message is out.
func untilGrace(ctx context.Context) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	unwatch := context.AfterFunc(ctx, func() {
		time.AfterFunc(finishGrace, func() { cancel(context.Cause(ctx)) })
	})
	return wctx, func() {
		unwatch()
		cancel(nil)
	}
}

// publishBytes is how much of a long message is written before the
// receiver is told (it starts reducing while the rest is written).
const publishBytes = 256 << 10

// publish makes the ring's bytes up to h visible and rings the doorbell
// if a receive is parked. It pairs with waitData (count itself parked,
// then read the head): each side writes its word, then reads the
// other's, so at least one sees the other's write. That needs the write
// to be ordered before the following read, which a plain atomic store
// does not promise everywhere: the race detector's atomic stores are
// release stores, which x86 may let a later load overtake, and then a
// receive parked while its message sat in the ring until its deadline
// (TestAllOpsShm under -race, once in a few dozen runs). An exchange is
// a full barrier under every implementation (and what Store compiles to
// on amd64 anyway). consume's tail pairs with waitSpace the same way.
func (pe *peer) publish(h uint64) {
	r := pe.out
	r.head.Swap(h)
	if r.rxWait.Load() > 0 {
		pe.ring(bellData)
	}
}

// write puts the messages into the out-ring. Call with txLock held.
func (pe *peer) write(ctx context.Context, tag transport.Tag, bufs [][]byte) error {
	r := pe.out
	head := pe.txHead
	defer func() { pe.txHead = head }()
	for _, b := range bufs {
		n := uint64(len(b))
		if n <= smallMax {
			idx := head & r.mask
			if idx+recHeader+alignUp(n, recHeader) > r.capacity {
				// It would wrap: pad to the ring's start.
				if err := pe.waitSpace(ctx, head, head+r.capacity-idx); err != nil {
					pe.publish(head)
					return err
				}
				binary.LittleEndian.PutUint64(r.data[idx:], 0)
				binary.LittleEndian.PutUint64(r.data[idx+8:], padFlag|(r.capacity-idx-recHeader))
				head += r.capacity - idx
				idx = 0
			}
			end := head + recHeader + alignUp(n, recHeader)
			if err := pe.waitSpace(ctx, head, end); err != nil {
				pe.publish(head)
				return err
			}
			binary.LittleEndian.PutUint64(r.data[idx:], uint64(tag))
			binary.LittleEndian.PutUint64(r.data[idx+8:], n)
			copy(r.data[idx+recHeader:], b)
			head = end
			continue
		}
		q := payloadStart(head, n)
		if err := pe.waitSpace(ctx, head, q); err != nil {
			pe.publish(head)
			return err
		}
		idx := head & r.mask
		binary.LittleEndian.PutUint64(r.data[idx:], uint64(tag))
		binary.LittleEndian.PutUint64(r.data[idx+8:], n)
		// The header is out once published: finish the message even if
		// ctx ends (within finishGrace of its end), so the stream stays
		// whole.
		wctx, cancel := untilGrace(ctx)
		pos, off := q, uint64(0)
		pe.publish(pos)
		for off < n {
			room := r.tail.Load() + r.capacity - pos
			if room == 0 {
				if err := pe.waitSpace(wctx, pos, pos+min(n-off, pageAlign)); err != nil {
					cancel()
					// Half a message is out: the pair cannot recover.
					pe.myState.Store(stateCrashed)
					pe.conn.Close()
					return err
				}
				continue
			}
			idx := pos & r.mask
			k := min(room, n-off, r.capacity-idx, publishBytes)
			copy(r.data[idx:idx+k], b[off:off+k])
			off += k
			pos += k
			if off == n {
				pos = recordEnd(q, n)
			}
			pe.publish(pos)
		}
		cancel()
		head = recordEnd(q, n)
	}
	pe.publish(head)
	return nil
}

// waitSpace waits until the ring can take bytes up to position need;
// published is what the reader has been told about (everything before
// it). A writer that makes no progress for drainAfter asks the receiving
// rank to park what is in the ring (nobody there may be receiving).
func (pe *peer) waitSpace(ctx context.Context, published, need uint64) error {
	r := pe.out
	if r.tail.Load()+r.capacity >= need {
		return nil
	}
	pe.publish(published)
	if spin := pe.t.cfg.Spin; spin > 0 {
		deadline := time.Now().Add(spin)
		for i := 0; ; i++ {
			if r.tail.Load()+r.capacity >= need {
				return nil
			}
			if i&63 == 63 {
				if time.Now().After(deadline) {
					break
				}
				transport.Yield()
			}
		}
	}
	var drain *time.Timer
	defer func() {
		if drain != nil {
			drain.Stop()
		}
	}()
	for {
		if err := pe.sendable(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return &transport.PeerError{Peer: pe.rank, Op: "send", Err: context.Cause(ctx)}
		}
		sig := pe.signalled()
		r.txWait.Add(1)
		tl := r.tail.Load()
		if tl+r.capacity >= need {
			r.txWait.Add(^uint32(0))
			return nil
		}
		if drain == nil {
			drain = time.NewTimer(drainAfter)
		}
		select {
		case <-sig:
		case <-drain.C:
			pe.ring(bellDrain)
			drain.Reset(drainAfter)
		case <-ctx.Done():
		case <-pe.dead:
		case <-pe.t.closed:
		}
		r.txWait.Add(^uint32(0))
	}
}

// drainAfter is how long a writer waits on a full ring before asking the
// receiving rank to park its contents.
const drainAfter = 5 * time.Millisecond

// --- receiving ---

// post is a posted receive.
type post struct {
	pe   *peer
	ctx  context.Context
	tag  transport.Tag
	buf  []byte
	n    int
	sink transport.ChunkSink

	fin  atomic.Bool
	err  error
	park *park // adopted parked message, copied out by Wait
	done chan struct{}
}

// newPost takes a recycled receive record (a steady stream of receives
// allocates none) or makes one.
func (pe *peer) newPost(ctx context.Context, tag transport.Tag, buf []byte, n int, sink transport.ChunkSink) *post {
	var p *post
	t := pe.t
	t.poolMu.Lock()
	if n := len(t.freePosts); n > 0 {
		p = t.freePosts[n-1]
		t.freePosts[n-1] = nil
		t.freePosts = t.freePosts[:n-1]
	}
	t.poolMu.Unlock()
	if p == nil {
		p = &post{done: make(chan struct{}, 1)}
	}
	select { // a token a completer left after the last user had returned
	case <-p.done:
	default:
	}
	p.pe, p.ctx, p.tag, p.buf, p.n, p.sink = pe, ctx, tag, buf, n, sink
	return p
}

// recycle returns a finished receive's record. Nothing refers to it any
// more: a receive leaves its queue and the pump's hands before it is
// completed (or withdraws in abandon), and is completed once.
func (p *post) recycle() {
	t := p.pe.t
	p.pe, p.ctx, p.buf, p.sink, p.park, p.err = nil, nil, nil, nil, nil, nil
	p.fin.Store(false)
	t.poolMu.Lock()
	if len(t.freePosts) < 256 {
		t.freePosts = append(t.freePosts, p)
	}
	t.poolMu.Unlock()
}

func (p *post) complete(err error) {
	p.err = err
	p.fin.Store(true)
	select {
	case p.done <- struct{}{}:
	default:
	}
}

// tagQueue holds one tag's receives waiting for messages, or messages
// waiting for receives (never both).
type tagQueue struct {
	posts []*post
	parks []*park
}

// queue returns tag's queue, creating (or recycling) one. Call with
// pe.mu held.
func (pe *peer) queue(tag transport.Tag) *tagQueue {
	q := pe.queues[tag]
	if q == nil {
		if n := len(pe.freeQueues); n > 0 {
			q = pe.freeQueues[n-1]
			pe.freeQueues = pe.freeQueues[:n-1]
		} else {
			q = &tagQueue{}
		}
		pe.queues[tag] = q
	}
	return q
}

// tidy recycles tag's queue once it is empty. Call with pe.mu held.
func (pe *peer) tidy(tag transport.Tag, q *tagQueue) {
	if len(q.posts) > 0 || len(q.parks) > 0 {
		return
	}
	delete(pe.queues, tag)
	if len(pe.freeQueues) < 64 {
		pe.freeQueues = append(pe.freeQueues, q)
	}
}

func popPost(q *tagQueue) *post {
	p := q.posts[0]
	copy(q.posts, q.posts[1:])
	q.posts[len(q.posts)-1] = nil
	q.posts = q.posts[:len(q.posts)-1]
	return p
}

// register puts a new receive in its (peer, tag) order: it takes the
// oldest parked message of its tag, or waits for the next one.
func (pe *peer) register(p *post) {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if e := pe.deadErr.Load(); e != nil {
		p.complete(&transport.PeerError{Peer: pe.rank, Op: "recv", Err: e.Err})
		return
	}
	q := pe.queue(p.tag)
	if len(q.parks) > 0 {
		p.park = q.parks[0]
		copy(q.parks, q.parks[1:])
		q.parks[len(q.parks)-1] = nil
		q.parks = q.parks[:len(q.parks)-1]
		pe.tidy(p.tag, q)
		p.complete(nil)
		return
	}
	q.posts = append(q.posts, p)
}

// takePost removes and returns the oldest receive waiting on tag. Call
// with pe.mu held.
func (pe *peer) takePost(tag transport.Tag) *post {
	q := pe.queues[tag]
	if q == nil || len(q.posts) == 0 {
		return nil
	}
	p := popPost(q)
	pe.tidy(tag, q)
	return p
}

func (pe *peer) consume(tl uint64) {
	r := pe.in
	pe.rxTail = tl
	r.tail.Swap(tl) // a full barrier before reading txWait (see publish)
	if r.txWait.Load() > 0 {
		pe.ring(bellSpace)
	}
}

// pump moves every complete piece in the in-ring to its receive (or a
// parked buffer) and returns the head it saw last. It never blocks. Call
// with pumpLock held.
func (pe *peer) pump() uint64 {
	r := pe.in
	for {
		head := r.head.Load()
		c := &pe.cur
		if !c.active {
			if head < pe.rxTail+recHeader { // (a long message's last publish may end short of its padded end)
				return head
			}
			idx := pe.rxTail & r.mask
			tag := transport.Tag(binary.LittleEndian.Uint64(r.data[idx:]))
			w := binary.LittleEndian.Uint64(r.data[idx+8:])
			if w&padFlag != 0 {
				pe.consume(pe.rxTail + recHeader + w&^padFlag)
				continue
			}
			if w > maxMessage {
				// Only a corrupted ring gets here: stop reading it.
				pe.markDead(fmt.Errorf("corrupt message header at position %d (length %d)", pe.rxTail, w))
				return head
			}
			*c = inflight{active: true, tag: tag, n: w, q: payloadStart(pe.rxTail, w)}
			pe.mu.Lock()
			if p := pe.takePost(tag); p == nil {
				c.park = pe.t.getPark(int(w))
			} else if uint64(p.n) != w {
				c.discard = true
				p.complete(&transport.SizeError{Peer: pe.rank, Tag: tag, Want: p.n, Got: int(w)})
			} else {
				c.post = p
			}
			pe.mu.Unlock()
		}
		pos := c.q + c.d
		if head < pos {
			return head
		}
		avail := min(head-pos, c.n-c.d)
		if c.n <= smallMax {
			if avail < c.n {
				return head
			}
		} else if c.d+avail < c.n {
			avail = (c.d+avail)&^(pageAlign-1) - c.d
			if avail == 0 {
				return head
			}
		}
		for avail > 0 {
			idx := (c.q + c.d) & r.mask
			k := min(avail, r.capacity-idx)
			src := r.data[idx : idx+k]
			switch {
			case c.post != nil && c.post.sink != nil:
				c.post.sink.Chunk(int(c.d), src)
			case c.post != nil:
				copy(c.post.buf[c.d:], src)
			case c.park != nil:
				copy(c.park.buf[c.d:], src)
			}
			c.d += k
			avail -= k
			if c.d < c.n {
				pe.consume(c.q + c.d)
			}
		}
		if c.d < c.n {
			continue // the rest of a long message is still being written
		}
		pe.consume(recordEnd(c.q, c.n))
		switch {
		case c.post != nil:
			c.post.complete(nil)
		case c.park != nil:
			pe.mu.Lock()
			if p := pe.takePost(c.tag); p != nil {
				p.park = c.park
				p.complete(nil)
			} else {
				q := pe.queue(c.tag)
				q.parks = append(q.parks, c.park)
			}
			pe.mu.Unlock()
		}
		*c = inflight{}
	}
}

// result is what a finished receive returns; a parked message is copied
// (or handed to the sink) here, on the caller's goroutine.
func (p *post) result() error {
	if p.err != nil || p.park == nil {
		return p.err
	}
	if len(p.park.buf) != p.n {
		return &transport.SizeError{Peer: p.pe.rank, Tag: p.tag, Want: p.n, Got: len(p.park.buf)}
	}
	if p.sink != nil {
		if p.n > 0 {
			p.sink.Chunk(0, p.park.buf)
		}
	} else {
		copy(p.buf, p.park.buf)
	}
	p.pe.t.putPark(p.park)
	p.park = nil
	return nil
}

// Wait implements transport.PostedRecv: it pumps the ring itself while
// nobody else does, and otherwise waits for its message, the pump, the
// peer's failure or its context.
func (p *post) Wait() error {
	t := p.pe.t
	err := p.wait()
	p.recycle()
	t.ops.Done()
	return err
}

func (p *post) wait() error {
	pe := p.pe
	for {
		if p.fin.Load() {
			return p.result()
		}
		select {
		case pe.pumpLock <- struct{}{}:
			state := pe.peerState.Load() // before pumping: all data sent before a goodbye is in the ring
			seen := pe.pump()
			<-pe.pumpLock
			if p.fin.Load() {
				return p.result()
			}
			if err := pe.failure("recv"); err != nil {
				return p.abandon(err)
			}
			if state == stateLeft {
				pe.sawLeft()
				return p.abandon(leftError("recv", pe.rank))
			}
			if pe.myState.Load() != stateAlive {
				return p.abandon(&transport.PeerError{Peer: pe.rank, Op: "recv", Err: errors.New("transport closed")})
			}
			if err := p.ctx.Err(); err != nil {
				return p.abandon(&transport.PeerError{Peer: pe.rank, Op: "recv", Err: err})
			}
			p.waitData(seen)
		case <-p.done:
		case <-p.ctx.Done():
			return p.abandon(&transport.PeerError{Peer: pe.rank, Op: "recv", Err: p.ctx.Err()})
		case <-pe.dead:
			return p.abandon(pe.failure("recv"))
		case <-pe.t.closed:
			return p.abandon(&transport.PeerError{Peer: pe.rank, Op: "recv", Err: errors.New("transport closed")})
		}
	}
}

// waitData waits until the in-ring's head moves past seen (or something
// else happens to the peer or the receive): polling first, then parked
// until the doorbell rings. Every receive polls, not only those marked
// transport.Soon: a parked wait costs a doorbell write, a poller wake-up
// and two goroutine switches, and measured on 2 cores (GOMAXPROCS 1 per
// rank) polling made 256 KiB-16 MiB all-reduces 1.3-5x faster at 2 ranks
// and up to 3x at 4 ranks, with less CPU per call.
//
// How long it polls adapts per peer (spinFor): a poll that sees the
// message restores the full budget, Config.Spin; one that times out cuts
// it by an eighth of that, down to minSpin (halving it instead cost 2-4x
// at 256 KiB over 4 ranks on 2 cores, where peers are often descheduled
// but a yielding poll still wins). Polling pays only while the
// peer's messages come within the budget; when they do not (the peer
// busy elsewhere, or the cores shared with other processes) every
// fruitless poll is a core taken from the peer, and a process whose
// goroutines keep polling in turn starves the runtime's network poller,
// which delivers the doorbells: measured with 3 busy processes on 2
// cores, the collective suite at 7 and 8 ranks in one process took 20-46 s
// with fixed 50 us polls, 8-15 s adapting, 3.3-4.9 s without polling
// (wake-ups through the poller took 8 ms instead of 9 us while other
// goroutines of the process kept polling: with yields the run queue is
// never empty, and the poller is then only checked every 10 ms).
func (p *post) waitData(seen uint64) {
	pe := p.pe
	r := pe.in
	if spin := time.Duration(pe.spinFor.Load()); spin > 0 {
		deadline := time.Now().Add(spin)
		for i := 0; ; i++ {
			if r.head.Load() != seen || p.fin.Load() {
				pe.spun(true)
				return
			}
			if i&63 == 63 {
				if time.Now().After(deadline) {
					pe.spun(false)
					break
				}
				if spin >= yieldSpin {
					transport.Yield()
				}
			}
		}
	}
	sig := pe.signalled()
	r.rxWait.Add(1)
	if r.head.Load() == seen && !p.fin.Load() {
		select {
		case <-sig:
		case <-p.done:
		case <-p.ctx.Done():
		case <-pe.dead:
		case <-pe.t.closed:
		}
	}
	r.rxWait.Add(^uint32(0))
}

// Adaptive polling bounds (see waitData): a receive polls at least
// minSpin, and yields the core between polls only when it may poll for
// yieldSpin or longer (a yield can cost a whole time slice of another
// process).
const (
	minSpin   = time.Microsecond
	yieldSpin = 10 * time.Microsecond
)

// spun adapts the peer's polling budget to whether a poll found its
// message.
func (pe *peer) spun(found bool) {
	cur, ceil := time.Duration(pe.spinFor.Load()), pe.t.cfg.Spin
	next := ceil
	if !found {
		next = max(cur-ceil/8, minSpin)
	}
	if next != cur {
		pe.spinFor.Store(int64(next))
	}
}

// abandon withdraws a receive that gives up with err: it leaves its
// queue, or, if its message is being moved, the rest of that message is
// skipped. Returns the receive's own result if it completed meanwhile.
func (p *post) abandon(err error) error {
	pe := p.pe
	pe.pumpLock <- struct{}{} // the pump never blocks: this wait is short
	if pe.cur.active && pe.cur.post == p {
		pe.cur.post, pe.cur.discard = nil, true
	}
	pe.mu.Lock()
	if q := pe.queues[p.tag]; q != nil {
		if i := slices.Index(q.posts, p); i >= 0 {
			q.posts = slices.Delete(q.posts, i, i+1)
			pe.tidy(p.tag, q)
		}
	}
	pe.mu.Unlock()
	<-pe.pumpLock
	if p.fin.Load() {
		return p.result()
	}
	return err
}

// --- background ---

// bell reads the pair's doorbell socket: every byte wakes this rank's
// goroutines parked on the peer; a drain request parks what is in the
// in-ring if nobody is pumping it; the socket's end is the peer's
// goodbye (its state says left) or its death (a kill -9 closes the
// socket too).
func (t *Transport) bell(pe *peer) {
	defer t.bg.Done()
	var buf [64]byte
	for {
		pe.bellAt.Store(bellReading)
		n, err := pe.conn.Read(buf[:])
		if n > 0 {
			pe.heard.Add(uint64(n))
			pe.bellAt.Store(bellSignalling)
			pe.signal()
			for _, b := range buf[:n] {
				if b == bellDrain {
					select {
					case pe.pumpLock <- struct{}{}:
						pe.bellAt.Store(bellPumping)
						pe.pump()
						<-pe.pumpLock
					default: // someone is pumping already
					}
					break
				}
			}
		}
		if err == nil {
			continue
		}
		select {
		case <-t.closed: // our own Close
			return
		default:
		}
		switch pe.peerState.Load() {
		case stateLeft:
			pe.sawLeft()
			pe.signal()
		case stateCrashed:
			pe.markDead(errors.New("peer aborted its transport"))
		default:
			pe.markDead(fmt.Errorf("process %d exited without closing its transport (killed?)", pe.pid))
		}
		return
	}
}
