package tcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strand-ml/strand/transport"
)

// peer is everything this rank knows about one other rank: its sockets,
// the messages in flight from it, and Recv calls waiting on it.
type peer struct {
	t       *Transport
	rank    int
	streams []*stream
	nextID  atomic.Uint64 // message ids this rank assigns when sending to the peer
	dead    chan struct{} // closed when the peer fails
	// writersGone is closed once every part writer of this peer has
	// exited (the transport closed): a part still queued for one will
	// never be written, and no writer touches a sender's buffer any more.
	writersGone chan struct{}
	writers     sync.WaitGroup

	mu        sync.Mutex
	cond      *sync.Cond                 // signalled on announcements, part completions and failure
	err       error                      // why the peer failed; nil while healthy
	failing   bool                       // fail has begun (announcing, then failLocked)
	left      bool                       // the peer said goodbye: no new messages will come
	inflight  map[uint64]*message        // announced on stream 0, parts still missing
	boxes     map[transport.Tag]*mailbox // per tag: early messages and waiting Recvs
	freeMsgs  []*message                 // recycled message records
	freeRecv  []*pending                 // recycled Recv records
	freeBoxes []*mailbox                 // recycled mailboxes
	splits    []chan error               // recycled completion channels for split sends
}

// stream is one socket to the peer.
type stream struct {
	conn  *net.TCPConn  // the socket: options, deadlines, close
	rw    net.Conn      // what frames are read from and written to: conn, or tls over it
	tls   *tls.Conn     // nil for a plaintext socket (tls.go)
	lock  chan struct{} // 1-slot semaphore: a waiter can give up when its ctx ends
	hdr   [frameHeaderLen]byte
	hdrs  [maxBatch][frameHeaderLen]byte // headers of a batched write
	vecs  [2 * maxBatch][]byte
	vec   [2][]byte
	bufs  net.Buffers
	parts chan partReq // work for this stream's part writer (streams >= 1)
	timed bool         // a write deadline is set on conn
	// coalesce gathers a small frame's buffers for one TLS write (one
	// record, one system call, instead of one per buffer).
	coalesce []byte

	// For receives that poll (pending.spin): the socket's descriptor (-1
	// if unknown) and whether the reader goroutine is inside a read of
	// the socket, i.e. has consumed everything it read before and waits
	// for the kernel.
	fd       int
	reading  atomic.Bool
	spinners atomic.Int32  // receives polling this stream (spinSolo)
	kick     chan struct{} // 1 slot: the reader tells a spinner it is back in its read
}

// streamReader is the socket as the stream's reader goroutine sees it: it
// marks the time spent inside the socket's Read (stream.reading).
type streamReader struct{ s *stream }

func (r streamReader) Read(b []byte) (int, error) {
	r.s.reading.Store(true)
	if r.s.spinners.Load() > 0 {
		select {
		case r.s.kick <- struct{}{}:
		default:
		}
	}
	n, err := r.s.rw.Read(b)
	r.s.reading.Store(false)
	return n, err
}

// partReq asks a stream's writer goroutine to send one part of a message.
type partReq struct {
	ctx  context.Context
	h    frameHeader
	data []byte
	done chan error
}

// message is one incoming message, from its first part to its last.
type message struct {
	id        uint64
	tag       transport.Tag
	total     int
	remaining int                 // bytes not yet received
	writers   int                 // parts being read into buf right now
	buf       []byte              // destination: the Recv's own buffer (direct) or a pooled one
	sink      transport.ChunkSink // direct destination of a chunked Recv (buf is nil)
	direct    bool                // buf (or sink) belongs to recv
	recv      *pending            // the Recv this message belongs to, once matched
	done      bool                // every byte has arrived
	abandoned bool                // its Recv gave up: drop the bytes
}

// pending is one Recv call waiting for its message.
type pending struct {
	p        *peer
	ctx      context.Context
	tag      transport.Tag
	box      *mailbox // the mailbox it was posted in (nil if it failed at once)
	buf      []byte
	sink     transport.ChunkSink // chunked receive: bytes go here, not to buf
	want     int                 // expected message length (len(buf) unless sink)
	opt      transport.RecvOpt   // the call's options (Soon: spin before parking)
	parked   []byte              // chunked receive of a parked message: Wait feeds it to sink
	msg      *message
	done     chan struct{} // receives one token when finished
	finished bool
	err      error
}

// mailbox holds, for one tag, messages that arrived before their Recv and
// Recvs posted before their message. At most one of the two is non-empty.
type mailbox struct {
	arrived []*message
	posted  []*pending
	// The largest backing arrays the queues have had (the queues advance
	// through them), so that a recycled mailbox starts with the capacity
	// its predecessors needed and a collective's window of posted
	// receives allocates nothing.
	arrivedBuf []*message
	postedBuf  []*pending
}

func newPeer(t *Transport, rank int, conns []sock) *peer {
	p := &peer{
		t:           t,
		rank:        rank,
		dead:        make(chan struct{}),
		writersGone: make(chan struct{}),
		inflight:    make(map[uint64]*message),
		boxes:       make(map[transport.Tag]*mailbox),
	}
	p.cond = sync.NewCond(&p.mu)
	for i, c := range conns {
		s := &stream{conn: c.tcp, rw: c.rw(), tls: c.tls, lock: make(chan struct{}, 1), fd: socketFD(c.tcp), kick: make(chan struct{}, 1)}
		if i > 0 {
			s.parts = make(chan partReq, 1)
		}
		p.streams = append(p.streams, s)
	}
	return p
}

func (p *peer) peerErr(op string, err error) error {
	return &transport.PeerError{Peer: p.rank, Op: op, Err: err}
}

// fail marks the peer dead, closes its sockets and wakes every waiter.
// Only the first failure is kept. The failure is announced
// (PeerFailures) before any waiter wakes: a caller that gets this peer's
// error must find the peer among the failures, or a collective would
// report a bare receive error instead of naming the dead rank.
func (p *peer) fail(err error) {
	err = p.linkErr(err)
	p.mu.Lock()
	first := p.err == nil && !p.failing
	p.failing = true
	p.mu.Unlock()
	if !first {
		return
	}
	if !errors.Is(err, errClosed) {
		p.t.noteFailure(&transport.PeerError{Peer: p.rank, Op: "connection", Err: err})
	}
	p.mu.Lock()
	p.failLocked(err)
	p.mu.Unlock()
}

func (p *peer) failLocked(err error) bool {
	if p.err != nil {
		return false
	}
	p.err = err
	close(p.dead)
	for _, s := range p.streams {
		s.conn.Close()
	}
	p.cond.Broadcast()
	return true
}

// ---- sending ----

func (p *peer) send(ctx context.Context, tag transport.Tag, buf []byte) error {
	select {
	case <-p.dead:
		return p.peerErr("send", p.deadErr())
	default:
	}
	p.mu.Lock()
	left := p.left
	p.mu.Unlock()
	if left {
		return p.peerErr("send", errPeerLeft)
	}
	id := p.nextID.Add(1)
	total := uint64(len(buf))
	k := len(p.streams)
	if len(buf) < p.t.cfg.SplitBytes || k == 1 {
		h := frameHeader{PartLen: uint32(len(buf)), Tag: uint64(tag), ID: id, Total: total}
		return p.writeFrame(ctx, p.streams[0], false, &h, buf)
	}
	// Split into k parts of whole 4 KiB pages; part 0 goes on stream 0.
	// Once one part is handed to its writer the message is committed:
	// the peer cannot skip a message with parts missing, so the rest
	// follow whatever ctx says (part writers finish within finishGrace).
	part := (len(buf) + k - 1) / k
	part = (part + 4095) &^ 4095
	done := p.getSplit()
	sent := 0
	var err error
	for i := 1; i < k && i*part < len(buf) && err == nil; i++ {
		lo, hi := i*part, min((i+1)*part, len(buf))
		req := partReq{ctx: ctx, h: frameHeader{PartLen: uint32(hi - lo), Tag: uint64(tag), ID: id, Total: total, Offset: uint64(lo)}, data: buf[lo:hi], done: done}
		var cancelled <-chan struct{}
		if sent == 0 {
			cancelled = ctx.Done() // nothing on the wire yet: giving up is clean
		}
		select {
		case p.streams[i].parts <- req:
			sent++
		case <-cancelled:
			err = ctx.Err()
		case <-p.dead:
			err = p.deadErr()
		}
	}
	if err == nil {
		h := frameHeader{PartLen: uint32(min(part, len(buf))), Tag: uint64(tag), ID: id, Total: total}
		err = p.writeFrame(ctx, p.streams[0], sent > 0, &h, buf[:min(part, len(buf))])
	} else {
		err = p.peerErr("send", err)
	}
	for ; sent > 0; sent-- { // the caller's buffer is busy until every part is written
		var e error
		select {
		case e = <-done:
		case <-p.writersGone:
			// The transport closed under us: parts still queued will
			// never be written (and their writers touch nothing now).
			select {
			case e = <-done:
			default:
				e = p.peerErr("send", errClosed)
			}
		}
		if e != nil && err == nil {
			err = e
		}
	}
	p.putSplit(done)
	return err
}

// maxBatch is the most messages sendMulti writes at once.
const maxBatch = 8

// sendMulti sends small messages in order with one vectored write; it
// falls back to one send per message when they are many or large.
func (p *peer) sendMulti(ctx context.Context, tag transport.Tag, bufs [][]byte) error {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if len(bufs) > maxBatch || total >= p.t.cfg.SplitBytes || len(bufs) < 2 {
		for _, b := range bufs {
			if err := p.send(ctx, tag, b); err != nil {
				return err
			}
		}
		return nil
	}
	select {
	case <-p.dead:
		return p.peerErr("send", p.deadErr())
	default:
	}
	p.mu.Lock()
	left := p.left
	p.mu.Unlock()
	if left {
		return p.peerErr("send", errPeerLeft)
	}
	s := p.streams[0]
	return p.writeLocked(ctx, s, false, func() net.Buffers {
		for i, b := range bufs {
			h := frameHeader{PartLen: uint32(len(b)), Tag: uint64(tag), ID: p.nextID.Add(1), Total: uint64(len(b))}
			h.encode(&s.hdrs[i])
			s.vecs[2*i], s.vecs[2*i+1] = s.hdrs[i][:], b
		}
		return s.vecs[:2*len(bufs)]
	})
}

func (p *peer) getSplit() chan error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.splits); n > 0 {
		c := p.splits[n-1]
		p.splits = p.splits[:n-1]
		return c
	}
	return make(chan error, 64)
}

func (p *peer) putSplit(c chan error) {
	p.mu.Lock()
	p.splits = append(p.splits, c)
	p.mu.Unlock()
}

func (p *peer) partWriter(s *stream) {
	for {
		select {
		case req := <-s.parts:
			req.done <- p.writeFrame(req.ctx, s, true, &req.h, req.data) // committed: see send
		case <-p.t.closed:
			return
		}
	}
}

func (p *peer) deadErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// aLongTimeAgo is a deadline in the past, to interrupt a blocked write.
var aLongTimeAgo = time.Unix(1, 0)

// writeFrame writes header and payload with one vectored write (see
// writeLocked for commit).
func (p *peer) writeFrame(ctx context.Context, s *stream, commit bool, h *frameHeader, payload []byte) error {
	return p.writeLocked(ctx, s, commit, func() net.Buffers {
		h.encode(&s.hdr)
		s.vec[0], s.vec[1] = s.hdr[:], payload
		return s.vec[:]
	})
}

// finishGrace bounds how long a frame that has begun (or a part of a
// message whose other parts are on the wire) may take to finish after its
// caller gave up, and how long a receiver that gives up waits for a part
// being read into its buffer. The peer's reader always drains its socket,
// so a healthy peer needs a frame's transfer time; only a peer that is
// alive but stalled takes the whole grace, and then its pair of streams is
// failed.
const finishGrace = time.Second

// writeLocked takes the stream, applies ctx's deadline and writes the
// buffers fill returns (built while holding the stream, so message ids go
// on the wire in the order they were assigned).
//
// Frames are never cut: a write that ctx interrupts after putting some
// bytes on the wire is finished (within finishGrace) before it returns
// ctx's error, so the stream stays in sync and the peer never sees this
// rank's own cancellation as a crash (a rank that gives up because a third
// rank died must still be able to say goodbye). With commit (a part of a
// message some of whose parts are already sent) the whole frame is
// written even if ctx has ended (waiting at most finishGrace beyond it for
// the stream). Only a write that cannot finish (the peer stalled, or the
// socket broke) fails the peer; a socket error is first checked against
// the peer's goodbye (leftCleanly), since a peer that left cleanly may
// reset its sockets when it closes.
func (p *peer) writeLocked(ctx context.Context, s *stream, commit bool, fill func() net.Buffers) error {
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		if !commit {
			return p.peerErr("send", ctx.Err())
		}
		// The frame must go out all the same: wait for the stream a
		// little longer (its holder finishes within its own deadline or
		// finishGrace), else the message can never complete.
		grace := time.NewTimer(finishGrace)
		defer grace.Stop()
		select {
		case s.lock <- struct{}{}:
		case <-grace.C:
			err := fmt.Errorf("part of a split message could not be sent within %v of its deadline: %w", finishGrace, ctx.Err())
			p.fail(err)
			return p.peerErr("send", err)
		case <-p.dead:
			return p.peerErr("send", p.deadErr())
		}
	case <-p.dead:
		return p.peerErr("send", p.deadErr())
	}
	defer func() { <-s.lock }()
	d, timed := ctx.Deadline()
	if commit && ctx.Err() != nil {
		d, timed = time.Now().Add(finishGrace), true
	}
	if timed && s.tls != nil {
		// A TLS write that times out leaves the session unusable, so a
		// frame can never be finished afterwards: give it finishGrace
		// from the start instead (and fail the peer if even that ends).
		d = d.Add(finishGrace)
	}
	if timed {
		_ = s.conn.SetWriteDeadline(d)
		s.timed = true
	} else if s.timed {
		_ = s.conn.SetWriteDeadline(time.Time{})
		s.timed = false
	}
	var interrupt *writeInterrupt
	if !timed && ctx.Done() != nil { // cancellable without deadline: watch it
		interrupt = &writeInterrupt{conn: s.conn, tls: s.tls != nil}
		interrupt.stop = context.AfterFunc(ctx, interrupt.fire)
		s.timed = true // the deadline may be moved; reset on next write
	}
	s.bufs = fill()
	var n int64
	var err error
	if s.tls != nil {
		n, err = s.writeTLS()
	} else {
		n, err = s.bufs.WriteTo(s.rw)
	}
	if err != nil && s.tls != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// (see above) the session is broken: nothing more can be sent
		if interrupt != nil {
			interrupt.disarm()
		}
		clear(s.vec[:])
		clear(s.vecs[:])
		err = fmt.Errorf("TLS write stalled %v past its deadline after %d bytes: %w", finishGrace, n, err)
		p.fail(err)
		return p.peerErr("send", err)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && (n > 0 || commit) {
		// Interrupted mid-frame by our own deadline or cancellation:
		// finish the frame.
		if interrupt != nil {
			interrupt.disarm()
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(finishGrace))
		s.timed = true
		m, ferr := s.bufs.WriteTo(s.rw)
		n += m
		if ferr == nil {
			err = ctx.Err() // delivered whole, but the caller's time is up
			if err == nil {
				err = os.ErrDeadlineExceeded
			}
			clear(s.vec[:])
			clear(s.vecs[:])
			return p.peerErr("send", err)
		}
		err = fmt.Errorf("frame stalled after %d bytes: %w", n, ferr)
		p.fail(err)
		clear(s.vec[:])
		clear(s.vecs[:])
		return p.peerErr("send", err)
	}
	if interrupt != nil {
		interrupt.disarm()
	}
	clear(s.vec[:])
	clear(s.vecs[:])
	if err == nil {
		return nil
	}
	select {
	case <-p.dead: // the socket was closed because the peer failed: say why
		return p.peerErr("send", p.deadErr())
	default:
	}
	if errors.Is(err, os.ErrDeadlineExceeded) { // nothing written: the stream is in sync
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return p.peerErr("send", err)
	}
	if p.leftCleanly() {
		return p.peerErr("send", errPeerLeft)
	}
	p.fail(fmt.Errorf("write: %w", err))
	return p.peerErr("send", err)
}

// tlsCoalesce is the largest batch of buffers writeTLS copies into one
// write; larger ones are written buffer by buffer.
const tlsCoalesce = 64 << 10

// writeTLS writes s.bufs to the TLS session: small batches (a frame
// header and its bytes, a batch of small frames) as one write, since the
// session seals every write in records of its own and sends each with
// its own system call.
func (s *stream) writeTLS() (int64, error) {
	total := 0
	for _, b := range s.bufs {
		total += len(b)
	}
	if total > tlsCoalesce {
		return s.bufs.WriteTo(s.tls)
	}
	s.coalesce = s.coalesce[:0]
	for _, b := range s.bufs {
		s.coalesce = append(s.coalesce, b...)
	}
	n, err := s.tls.Write(s.coalesce)
	return int64(n), err
}

// writeInterrupt moves a socket's write deadline into the past when a
// write's context (one without a deadline) is cancelled, unless the write
// has been disarmed meanwhile (it is finishing its frame).
type writeInterrupt struct {
	conn     *net.TCPConn
	tls      bool // a TLS stream: the frame gets finishGrace (see writeLocked)
	stop     func() bool
	mu       sync.Mutex
	disarmed bool
}

func (w *writeInterrupt) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.disarmed {
		at := aLongTimeAgo
		if w.tls {
			at = time.Now().Add(finishGrace)
		}
		_ = w.conn.SetWriteDeadline(at)
	}
}

func (w *writeInterrupt) disarm() {
	w.stop()
	w.mu.Lock()
	w.disarmed = true
	w.mu.Unlock()
}

// leftCleanly waits (at most finishGrace) after a socket error on a write
// for this peer's readers to tell a clean exit from a crash: a peer that
// said goodbye may reset the socket when it closes, and must not be
// announced as failed. It reports whether the peer left.
func (p *peer) leftCleanly() bool {
	deadline := time.Now().Add(finishGrace)
	for {
		p.mu.Lock()
		left, failed := p.left, p.err != nil || p.failing
		p.mu.Unlock()
		switch {
		case left:
			return true
		case failed, time.Now().After(deadline):
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// ---- receiving ----

// readLoop reads frames from one socket until it fails. It never waits for
// a Recv: early messages are parked, so one slow tag cannot block others.
func (p *peer) readLoop(s *stream, idx int) {
	sr := streamReader{s}
	br := bufio.NewReaderSize(sr, 256<<10)
	var hb [frameHeaderLen]byte
	maxMsg := uint64(p.t.cfg.MaxMessage)
	sawBye := false // this stream's goodbye arrived: EOF is expected
	for {
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			if sawBye {
				// A clean exit, announced by goodbye. The end may come
				// as a reset rather than EOF (the peer closed with our
				// bytes unread): nothing more was due on this stream.
				return
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("connection closed by peer without goodbye (process died?)")
			}
			p.fail(err)
			return
		}
		h, err := decodeFrameHeader(hb[:], maxMsg)
		if err != nil {
			p.fail(fmt.Errorf("protocol error on stream %d: %w", idx, err))
			return
		}
		if h.Bye {
			sawBye = true
			if idx == 0 {
				p.goodbye(h.ByeWhy)
			}
			continue
		}
		m, dst, sink, err := p.announce(idx, &h)
		if err != nil {
			p.fail(err)
			return
		}
		if sink != nil {
			err = readChunks(br, sink, int(h.Offset), int(h.PartLen))
		} else {
			err = readFull(br, sr, dst)
		}
		if !p.partDone(m, int(h.PartLen), err) {
			return
		}
	}
}

var errPeerLeft = transport.ErrPeerLeft

// goodbye records a clean exit: Recvs that can no longer be matched fail
// now; messages already announced still complete. why is the goodbye's
// ByeWhy: if the peer left because it saw another rank fail, that rank's
// failure is announced first (as with a failure we see ourselves, before
// any waiter wakes), so that a caller whose Recv fails with ErrPeerLeft
// finds the culprit among PeerFailures at once.
func (p *peer) goodbye(why uint32) {
	if why > 0 {
		p.t.noteReported(int(why-1), p.rank)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.left = true
	for tag, b := range p.boxes {
		for _, r := range b.posted {
			r.err, r.finished = p.peerErr("recv", errPeerLeft), true
			r.done <- struct{}{}
		}
		b.posted = nil
		p.tidy(tag, b)
	}
}

// sayGoodbye tells the peer this side is closing, so it does not mistake
// the closing sockets for a crash; why (ByeWhy) names the failed rank that
// made this side give up, if any. Bounded by a short deadline: a frame
// being written finishes first (frames are never cut), and the peer's
// reader always drains its socket.
func (p *peer) sayGoodbye(why uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range p.streams {
		h := frameHeader{Bye: true, ByeWhy: why}
		_ = p.writeFrame(ctx, s, false, &h, nil)
	}
}

// announce finds (stream > 0) or creates (stream 0) the message a frame
// belongs to and returns where its bytes go: a slice of a buffer, or (for
// a chunked Recv) a sink.
func (p *peer) announce(idx int, h *frameHeader) (*message, []byte, transport.ChunkSink, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m *message
	if idx == 0 {
		if h.Offset != 0 {
			return nil, nil, nil, fmt.Errorf("protocol error: stream 0 frame at offset %d", h.Offset)
		}
		if p.inflight[h.ID] != nil {
			return nil, nil, nil, fmt.Errorf("protocol error: message id %d announced twice", h.ID)
		}
		m = p.newMessage()
		m.id, m.tag, m.total, m.remaining = h.ID, transport.Tag(h.Tag), int(h.Total), int(h.Total)
		box := p.box(m.tag)
		if len(box.posted) > 0 {
			r := box.posted[0]
			box.posted[0] = nil
			box.posted = box.posted[1:]
			p.match(m, r)
		} else {
			m.buf = p.t.pool.get(m.total)
			box.arrived = append(box.arrived, m)
			if cap(box.arrived) > cap(box.arrivedBuf) { // append moved it to a new array
				box.arrivedBuf = box.arrived[:0]
			}
		}
		if m.total > int(h.PartLen) {
			p.inflight[h.ID] = m
			p.cond.Broadcast()
		}
	} else {
		for p.err == nil {
			if m = p.inflight[h.ID]; m != nil {
				break
			}
			p.cond.Wait()
		}
		if p.err != nil {
			return nil, nil, nil, p.err
		}
		if uint64(m.tag) != h.Tag || uint64(m.total) != h.Total {
			return nil, nil, nil, fmt.Errorf("protocol error: part of message %d disagrees on tag or length", h.ID)
		}
	}
	if p.err != nil {
		return nil, nil, nil, p.err
	}
	m.writers++
	if m.sink != nil {
		return m, nil, m.sink, nil
	}
	return m, m.buf[h.Offset : h.Offset+uint64(h.PartLen)], nil, nil
}

// match binds message m to the waiting Recv r.
func (p *peer) match(m *message, r *pending) {
	m.recv, r.msg = r, m
	if r.want == m.total {
		if r.sink != nil {
			m.sink, m.direct = r.sink, true
			return
		}
		m.buf, m.direct = r.buf, true
		return
	}
	m.buf = p.t.pool.get(m.total)
	r.err = &transport.SizeError{Peer: p.rank, Tag: m.tag, Want: r.want, Got: m.total}
}

// partDone accounts n received bytes of m; it reports false if the stream
// failed.
func (p *peer) partDone(m *message, n int, readErr error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m.writers--
	if readErr != nil {
		p.cond.Broadcast()
		p.mu.Unlock()
		if errors.Is(readErr, io.EOF) {
			readErr = io.ErrUnexpectedEOF
		}
		p.fail(fmt.Errorf("read frame payload: %w", readErr))
		p.mu.Lock() // for the deferred Unlock
		return false
	}
	m.remaining -= n
	if m.remaining == 0 {
		delete(p.inflight, m.id)
		p.complete(m)
	}
	if m.writers == 0 {
		p.cond.Broadcast()
	}
	return true
}

// complete finishes a fully received message.
func (p *peer) complete(m *message) {
	m.done = true
	r := m.recv
	switch {
	case r != nil:
		if !m.direct {
			switch {
			case r.err == nil && r.sink != nil:
				r.parked = m.buf // Wait feeds it to the sink, outside the lock
			case r.err == nil:
				copy(r.buf, m.buf)
				p.t.pool.put(m.buf)
			default:
				p.t.pool.put(m.buf)
			}
		}
		r.finished = true
		r.done <- struct{}{}
		p.freeMessage(m)
	case m.abandoned:
		if !m.direct {
			p.t.pool.put(m.buf)
		}
		p.freeMessage(m)
	}
	// otherwise it waits in its mailbox for a Recv
}

// post registers a receive: it takes the tag's oldest early message, or
// queues r for the next one to arrive. Either way the receive holds its
// place in the tag's order from this moment; Wait finishes it.
//
// With a sink, the message's bytes go to sink instead of buf (nil), and
// want is the expected length. opt holds the call's options
// (transport.Soon: see spin).
func (p *peer) post(ctx context.Context, tag transport.Tag, buf []byte, want int, sink transport.ChunkSink, opt transport.RecvOpt) *pending {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.newPending(buf)
	r.p, r.ctx, r.tag, r.want, r.sink, r.opt = p, ctx, tag, want, sink, opt
	// Messages that arrived before the peer failed or left are still
	// delivered; only then is the peer's state an error.
	if b := p.boxes[tag]; (b == nil || len(b.arrived) == 0) && (p.err != nil || p.left) {
		err := p.err
		if err == nil {
			err = errPeerLeft
		}
		r.err, r.finished = p.peerErr("recv", err), true
		r.done <- struct{}{}
		return r
	}
	box := p.box(tag)
	r.box = box
	if len(box.arrived) > 0 {
		m := box.arrived[0]
		box.arrived[0] = nil
		box.arrived = box.arrived[1:]
		m.recv, r.msg = r, m
		if want != m.total {
			r.err = &transport.SizeError{Peer: p.rank, Tag: tag, Want: want, Got: m.total}
		}
		if m.done {
			switch {
			case r.err == nil && sink != nil:
				r.parked = m.buf // Wait feeds it to the sink, outside the lock
			case r.err == nil:
				copy(buf, m.buf)
				p.t.pool.put(m.buf)
			default:
				p.t.pool.put(m.buf)
			}
			p.freeMessage(m)
			r.msg, r.finished = nil, true
			r.done <- struct{}{}
		}
	} else {
		box.posted = append(box.posted, r)
		if cap(box.posted) > cap(box.postedBuf) {
			box.postedBuf = box.posted[:0]
		}
	}
	return r
}

// Wait implements transport.PostedRecv: it blocks until the posted
// receive completes, its context ends or the peer fails. Call it once.
func (r *pending) Wait() error {
	p := r.p
	var waitErr error
	if !r.spin() {
		select {
		case <-r.done:
		case <-r.ctx.Done():
			waitErr = r.ctx.Err()
		case <-p.dead:
		}
	}
	p.mu.Lock()
	tag, box := r.tag, r.box
	if r.finished {
		select { // the token may still be there if we woke for another reason
		case <-r.done:
		default:
		}
		err, sink, parked := r.err, r.sink, r.parked
		p.freePending(r)
		if box != nil {
			p.tidy(tag, box)
		}
		p.mu.Unlock()
		if parked != nil {
			feedChunks(sink, parked)
			p.t.pool.put(parked)
		}
		return err
	}
	defer p.mu.Unlock()
	if waitErr == nil {
		waitErr = p.err
	}
	p.abandon(r, box)
	p.tidy(tag, box)
	return p.peerErr("recv", waitErr)
}

// spinMaxBytes: only receives up to this size spin before parking, and
// only those marked transport.Soon; a bigger message
// takes longer to arrive than a wake-up costs.
const spinMaxBytes = 64 << 10

// spin polls for completion for a while before Wait parks, and reports
// whether it took the completion token. A parked goroutine's thread sleeps
// in the kernel until the network poller wakes it (tens of microseconds on
// a busy machine); a polling one sees its message at once. Between polls
// it yields its core (sched_yield), so that other threads and, on a shared
// host, the peer's process run at once rather than after a scheduler
// slice: a plain busy loop made 4 KiB all-reduces twice as slow. How long
// it polls adapts (spinPolicy). The ctx and a dead peer are left to the
// parking select.
//
// With one P (GOMAXPROCS=1, the usual setting of one rank per core) the
// reader goroutine cannot run while this goroutine polls, so it polls the
// socket instead: while the reader waits in its read and the kernel has
// nothing for it, it yields; once the kernel has bytes (or the reader has
// work left), it steps aside (parks until the reader either completes the
// receive or goes back to reading, which hands the P back at once) and
// then polls again. So a receive on a rank of an oversubscribed host
// behaves like Open MPI's yield-when-idle progress loop.
func (r *pending) spin() bool {
	p := r.p
	sp := &p.t.spin
	if r.want > spinMaxBytes || sp.max <= 0 || !r.opt.Has(transport.Soon) {
		return false
	}
	d := sp.budget()
	if d <= 0 {
		return false
	}
	if sp.soloP {
		return r.spinSolo(d)
	}
	var start time.Time
	for i := 0; ; i++ {
		select {
		case <-r.done:
			sp.record(true, d)
			return true
		default:
		}
		if i&7 == 0 {
			if i == 0 {
				start = time.Now()
			} else if time.Since(start) > d {
				sp.record(false, d)
				return false
			}
		}
		osYield()
	}
}

// spinSolo is spin with one P: it polls the socket the message comes on
// (stream 0: small messages are never split) rather than the completion
// token, which only the reader goroutine can deliver.
func (r *pending) spinSolo(d time.Duration) bool {
	p, sp, s := r.p, &r.p.t.spin, r.p.streams[0]
	s.spinners.Add(1)
	defer s.spinners.Add(-1)
	select { // a kick left over from an earlier spinner
	case <-s.kick:
	default:
	}
	start := time.Now()
	for {
		select {
		case <-r.done:
			sp.record(true, d)
			return true
		default:
		}
		if time.Since(start) > d {
			sp.record(false, d)
			return false
		}
		if s.reading.Load() && !readable(s.fd) {
			osYield()
			continue
		}
		// The reader has bytes to handle: let it run on our P.
		select {
		case <-r.done:
			sp.record(true, d)
			return true
		case <-s.kick: // the reader is back in its read: poll again
		case <-r.ctx.Done():
			return false
		case <-p.dead:
			return false
		}
	}
}

// abandon detaches a Recv that gives up (deadline or failure) so that its
// buffer is never written after it returns.
func (p *peer) abandon(r *pending, box *mailbox) {
	m := r.msg
	if m == nil {
		for i, q := range box.posted {
			if q == r {
				box.posted = append(box.posted[:i], box.posted[i+1:]...)
				break
			}
		}
		return // r is dropped, not recycled: nothing refers to it now
	}
	m.recv, m.abandoned = nil, true
	if m.direct {
		if m.writers > 0 && p.err == nil {
			// A part is being read into the caller's buffer (or sink):
			// let it finish, which takes a part's transfer time (senders
			// never cut frames). Closing the sockets instead would look
			// like this rank's crash to the peer, which would then blame
			// us rather than whatever made us give up. Only a peer that
			// stalls mid-frame for finishGrace is failed: the stream
			// cannot be resynchronized.
			finished := false // guarded by p.mu
			stalled := time.AfterFunc(finishGrace, func() {
				p.mu.Lock()
				ok := finished
				p.mu.Unlock()
				if !ok {
					p.fail(errors.New("stalled mid-frame while this rank's receiver was giving up"))
				}
			})
			for m.writers > 0 {
				p.cond.Wait()
			}
			finished = true
			stalled.Stop()
		}
		for m.writers > 0 {
			p.cond.Wait()
		}
		m.direct, m.sink = false, nil
		m.buf = p.t.pool.get(m.total)
	}
}

func (p *peer) box(tag transport.Tag) *mailbox {
	b := p.boxes[tag]
	if b == nil {
		if n := len(p.freeBoxes); n > 0 {
			b = p.freeBoxes[n-1]
			p.freeBoxes = p.freeBoxes[:n-1]
		} else {
			b = &mailbox{}
		}
		b.arrived, b.posted = b.arrivedBuf[:0], b.postedBuf[:0]
		p.boxes[tag] = b
	}
	return b
}

// tidy drops an empty mailbox so short-lived tags do not accumulate.
func (p *peer) tidy(tag transport.Tag, b *mailbox) {
	if len(b.arrived) == 0 && len(b.posted) == 0 && p.boxes[tag] == b {
		delete(p.boxes, tag)
		// Collectives use a new tag per call: recycle the mailbox.
		clear(b.arrivedBuf[:cap(b.arrivedBuf)])
		clear(b.postedBuf[:cap(b.postedBuf)])
		if len(p.freeBoxes) < 64 {
			p.freeBoxes = append(p.freeBoxes, b)
		}
	}
}

func (p *peer) newMessage() *message {
	if n := len(p.freeMsgs); n > 0 {
		m := p.freeMsgs[n-1]
		p.freeMsgs = p.freeMsgs[:n-1]
		return m
	}
	return &message{}
}

func (p *peer) freeMessage(m *message) {
	*m = message{}
	if len(p.freeMsgs) < 1024 {
		p.freeMsgs = append(p.freeMsgs, m)
	}
}

func (p *peer) newPending(buf []byte) *pending {
	var r *pending
	if n := len(p.freeRecv); n > 0 {
		r = p.freeRecv[n-1]
		p.freeRecv = p.freeRecv[:n-1]
	} else {
		r = &pending{done: make(chan struct{}, 1)}
	}
	r.buf = buf
	return r
}

// readFull fills dst with the bytes already in br's buffer and reads the
// rest straight from the socket: through br, everything after a large
// part's first read-ahead would be read into the buffer and copied again.
func readFull(br *bufio.Reader, c io.Reader, dst []byte) error {
	n := 0
	if k := min(br.Buffered(), len(dst)); k > 0 {
		n, _ = br.Read(dst[:k]) // from the buffer only: no system call
	}
	if n < len(dst) {
		if _, err := io.ReadFull(c, dst[n:]); err != nil {
			return err
		}
	}
	return nil
}

// chunkMax is the largest chunk handed to a ChunkSink: small enough to stay
// in a core's L2 cache between the socket read and the sink's use of it.
const chunkMax = 256 << 10

// feedChunks hands a fully received (parked) message to sink.
func feedChunks(sink transport.ChunkSink, b []byte) {
	for off := 0; off < len(b); off += chunkMax {
		sink.Chunk(off, b[off:min(off+chunkMax, len(b))])
	}
}

// readChunks reads the n bytes of a part starting at message offset off
// and hands them to sink straight out of the socket's read buffer (no
// copy), in chunks that start at multiples of transport.ChunkAlign.
func readChunks(br *bufio.Reader, sink transport.ChunkSink, off, n int) error {
	const align = transport.ChunkAlign
	for n > 0 {
		k := br.Buffered()
		switch {
		case k >= n:
			k = n
		case k >= align:
			k &^= align - 1
		default: // wait for a full aligned chunk (or the rest of the part)
			k = min(n, align)
		}
		b, err := br.Peek(k)
		if err != nil {
			return err
		}
		sink.Chunk(off, b)
		_, _ = br.Discard(k)
		off += k
		n -= k
	}
	return nil
}

func (p *peer) freePending(r *pending) {
	done := r.done
	*r = pending{done: done}
	if len(p.freeRecv) < 1024 {
		p.freeRecv = append(p.freeRecv, r)
	}
}

// socketFD is c's file descriptor, or -1. It is only ever polled for
// readiness (readable); a descriptor closed and reused by then gives at
// worst a spurious answer, which costs a spinner one needless park.
func socketFD(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}
