package shm

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
)

// Config describes one rank's place in a shared-memory job.
type Config struct {
	Rank, Size int              // this rank and the number of ranks
	Store      rendezvous.Store // where the creators of segments publish them
	JobID      string           // ranks of different jobs refuse each other's segments
	// Peers are the ranks this transport connects to (all on this host).
	// Nil means every other rank.
	Peers []int
	// RingBytes is the capacity of each direction of a pair (a power of
	// two, at least 256 KiB; default 4 MiB, what the TCP transport's
	// socket buffers hold): a message this long can be sent while the
	// receiver is busy elsewhere.
	RingBytes int
	// Spin is how long a receive (or a send waiting for ring space)
	// polls at most before parking on the doorbell; a receive's budget
	// adapts below it (post.waitData). 0 picks 50 µs; < 0 never spins.
	Spin   time.Duration
	Logger *slog.Logger // peer failures (default slog.Default())
}

func (c *Config) fill() error {
	if c.Size <= 0 || c.Rank < 0 || c.Rank >= c.Size {
		return fmt.Errorf("shm: rank %d outside world of size %d", c.Rank, c.Size)
	}
	if c.Store == nil {
		return errors.New("shm: Config.Store is nil")
	}
	if c.Peers == nil {
		for p := 0; p < c.Size; p++ {
			if p != c.Rank {
				c.Peers = append(c.Peers, p)
			}
		}
	}
	for _, p := range c.Peers {
		if p < 0 || p >= c.Size || p == c.Rank {
			return fmt.Errorf("shm rank %d: peer %d invalid in a world of %d", c.Rank, p, c.Size)
		}
	}
	if c.RingBytes == 0 {
		c.RingBytes = 4 << 20
	}
	if c.RingBytes < 256<<10 || c.RingBytes&(c.RingBytes-1) != 0 {
		return fmt.Errorf("shm: RingBytes %d is not a power of two >= 256 KiB", c.RingBytes)
	}
	if c.Spin == 0 {
		c.Spin = 50 * time.Microsecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Transport is one rank's shared-memory connections to its peers.
type Transport struct {
	cfg   Config
	log   *slog.Logger
	peers []*peer // indexed by rank; nil for ranks not connected

	mu        sync.Mutex
	myRegions [][]byte // this rank's shared regions (regions.go), to mark at Close
	failures  []*transport.PeerError
	failCh    chan struct{}
	closing   bool

	closed    chan struct{}
	closeOnce sync.Once
	ops       sync.WaitGroup // calls and goroutines touching the mappings
	// Recycled receive records and parked-message buffers (free lists,
	// not sync.Pool: the race detector makes a Pool drop a quarter of
	// what it is given, and the allocation tests run under it too).
	poolMu    sync.Mutex
	freePosts []*post
	freeParks [48][]*park    // by buffer size class (cap 1<<k)
	keptParks int            // bytes held in freeParks
	bg        sync.WaitGroup // doorbell readers
}

var _ transport.Transport = (*Transport)(nil)

// Caps implements transport.Transport: everything is native. Every
// receive polls (post.waitData), with or without transport.Soon.
func (t *Transport) Caps() transport.Caps {
	return transport.Caps{PostedRecv: true, ChunkedRecv: true, BatchedSend: true, Notifies: true, Polls: t.cfg.Spin > 0}
}

func segKey(job string, lo, hi int) string {
	return "strand/shm/" + job + "/seg/" + strconv.Itoa(lo) + "/" + strconv.Itoa(hi)
}

// Dial sets up a segment with every peer: the lower rank of a pair
// creates it (memfd, 0600, no name in any file system) and publishes its
// pid and descriptor; the higher rank maps it through /proc, checks the
// job and ranks, and connects to the creator's doorbell socket (an
// abstract Unix socket, so also bound to the network namespace) with the
// secret it read from the segment; then the creator closes its
// descriptor, so the memory lives exactly as long as the two mappings.
func Dial(ctx context.Context, cfg Config) (*Transport, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:    cfg,
		log:    cfg.Logger.With("rank", cfg.Rank, "job", cfg.JobID),
		peers:  make([]*peer, cfg.Size),
		failCh: make(chan struct{}),
		closed: make(chan struct{}),
	}
	type result struct {
		p   *peer
		err error
	}
	res := make(chan result, len(cfg.Peers))
	for _, p := range cfg.Peers {
		go func() {
			pe, err := t.connect(ctx, p)
			res <- result{pe, err}
		}()
	}
	var errs []error
	for range cfg.Peers {
		r := <-res
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		t.peers[r.p.rank] = r.p
	}
	if len(errs) > 0 {
		t.Abort()
		return nil, fmt.Errorf("shm rank %d: %w", cfg.Rank, errors.Join(errs...))
	}
	for _, pe := range t.peers {
		if pe != nil {
			t.bg.Add(1)
			go t.bell(pe)
		}
	}
	return t, nil
}

// connect maps the segment shared with rank p and connects the pair's
// doorbell socket.
func (t *Transport) connect(ctx context.Context, p int) (*peer, error) {
	me, ringCap := t.cfg.Rank, t.cfg.RingBytes
	lo, hi := min(me, p), max(me, p)
	fail := func(err error) (*peer, error) { return nil, &transport.PeerError{Peer: p, Op: "connect", Err: err} }
	if me == lo {
		fd, m, err := newSegment(segmentSize(ringCap))
		if err != nil {
			return fail(err)
		}
		defer closeFD(fd)
		var secret [32]byte
		if _, err := rand.Read(secret[:]); err != nil {
			unmap(m)
			return fail(err)
		}
		writeHeader(m, ringCap, t.cfg.JobID, lo, hi, os.Getpid(), secret)
		// An abstract socket: no file, gone with the process.
		name := "@strand-shm-" + hex.EncodeToString(secret[:8]) + "-" + strconv.Itoa(os.Getpid())
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
		if err != nil {
			unmap(m)
			return fail(fmt.Errorf("doorbell socket: %w", err))
		}
		defer ln.Close()
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		val := fmt.Sprintf("%d %d %s", os.Getpid(), fd, name)
		if err := t.cfg.Store.Set(ctx, segKey(t.cfg.JobID, lo, hi), []byte(val)); err != nil {
			unmap(m)
			return fail(fmt.Errorf("publish segment: %w", err))
		}
		// The descriptor stays open until the peer has mapped the
		// segment, which it proves by presenting the secret from it.
		conn, err := ln.AcceptUnix()
		if err != nil {
			unmap(m)
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fail(fmt.Errorf("rank %d never mapped the shared segment: %w", p, err))
		}
		var got [32]byte
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(conn, got[:]); err != nil || subtle.ConstantTimeCompare(got[:], secret[:]) != 1 {
			conn.Close()
			unmap(m)
			return fail(fmt.Errorf("doorbell: peer did not present the segment's secret (%v)", err))
		}
		_ = conn.SetReadDeadline(time.Time{})
		return t.newPeer(p, m, true, conn), nil
	}
	raw, err := t.cfg.Store.Get(ctx, segKey(t.cfg.JobID, lo, hi))
	if err != nil {
		return fail(fmt.Errorf("segment not published: %w", err))
	}
	var pid, fd int
	var name string
	if _, err := fmt.Sscan(string(raw), &pid, &fd, &name); err != nil {
		return fail(fmt.Errorf("bad segment address %q", raw))
	}
	m, err := openSegment(pid, fd)
	if err != nil {
		return fail(fmt.Errorf("cannot share memory with rank %d (another host or namespace?): %w", p, err))
	}
	if err := checkHeader(m, ringCap, t.cfg.JobID, lo, hi, pid); err != nil {
		unmap(m)
		return fail(err)
	}
	u32(m, offPids+4).Store(uint32(os.Getpid()))
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", name)
	if err != nil {
		unmap(m)
		return fail(fmt.Errorf("doorbell socket of rank %d (another network namespace?): %w", p, err))
	}
	conn := c.(*net.UnixConn)
	if _, err := conn.Write(m[offSecret : offSecret+32]); err != nil {
		conn.Close()
		unmap(m)
		return fail(fmt.Errorf("doorbell: %w", err))
	}
	return t.newPeer(p, m, false, conn), nil
}

func checkHeader(m []byte, ringCap int, job string, lo, hi, pid int) error {
	if u64(m, offMagic).Load() != magic {
		return errors.New("segment has no strand header")
	}
	if c := binary.LittleEndian.Uint64(m[offCap:]); c != uint64(ringCap) || len(m) != segmentSize(ringCap) {
		return fmt.Errorf("segment ring size %d, this rank uses %d", c, ringCap)
	}
	h := jobHash(job)
	if string(m[offJob:offJob+32]) != string(h[:]) {
		return errors.New("segment belongs to another job")
	}
	if l, h := binary.LittleEndian.Uint32(m[offRanks:]), binary.LittleEndian.Uint32(m[offRanks+4:]); int(l) != lo || int(h) != hi {
		return fmt.Errorf("segment is for ranks %d-%d, not %d-%d", l, h, lo, hi)
	}
	if int(u32(m, offPids).Load()) != pid {
		return errors.New("segment creator pid differs from the published one")
	}
	return nil
}

// Rank implements transport.Transport.
func (t *Transport) Rank() int { return t.cfg.Rank }

// Size implements transport.Transport.
func (t *Transport) Size() int { return t.cfg.Size }

// Peers returns the ranks this transport is connected to.
func (t *Transport) Peers() []int { return slices.Clone(t.cfg.Peers) }

func (t *Transport) peer(op string, p int) (*peer, error) {
	if p < 0 || p >= len(t.peers) || t.peers[p] == nil {
		return nil, &transport.PeerError{Peer: p, Op: op, Err: fmt.Errorf("rank %d has no shared-memory connection to rank %d", t.cfg.Rank, p)}
	}
	return t.peers[p], nil
}

// enter registers a call that touches the mappings; it fails once the
// transport is closing.
func (t *Transport) enter(op string, p int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return &transport.PeerError{Peer: p, Op: op, Err: errors.New("transport closed")}
	}
	t.ops.Add(1)
	return nil
}

// Send implements transport.Transport. It returns when buf is in the
// ring (the receiver may not have read it yet).
func (t *Transport) Send(ctx context.Context, p int, tag transport.Tag, buf []byte) error {
	b := [1][]byte{buf}
	return t.SendMulti(ctx, p, tag, b[:])
}

// SendMulti implements transport.Transport: the messages are written in
// order and published together (one wake-up at the receiver).
func (t *Transport) SendMulti(ctx context.Context, p int, tag transport.Tag, bufs [][]byte) error {
	pe, err := t.peer("send", p)
	if err != nil {
		return err
	}
	if err := t.enter("send", p); err != nil {
		return err
	}
	defer t.ops.Done()
	select {
	case pe.txLock <- struct{}{}:
	case <-ctx.Done():
		return &transport.PeerError{Peer: p, Op: "send", Err: ctx.Err()}
	case <-pe.dead:
		return pe.failure("send")
	}
	defer func() { <-pe.txLock }()
	if err := pe.sendable(); err != nil {
		return err
	}
	return pe.write(ctx, tag, bufs)
}

// Recv implements transport.Transport. Every receive polls before
// parking, so transport.Soon changes nothing.
func (t *Transport) Recv(ctx context.Context, p int, tag transport.Tag, buf []byte, _ ...transport.RecvOpt) error {
	return t.post(ctx, p, tag, buf, len(buf), nil).Wait()
}

// PostRecv implements transport.Transport.
func (t *Transport) PostRecv(ctx context.Context, p int, tag transport.Tag, buf []byte, _ ...transport.RecvOpt) transport.PostedRecv {
	return t.post(ctx, p, tag, buf, len(buf), nil)
}

// PostRecvChunks implements transport.Transport: the sink is handed
// the message straight out of the ring (the peer's memory), so a reducing
// collective combines it with no intermediate copy.
func (t *Transport) PostRecvChunks(ctx context.Context, p int, tag transport.Tag, n int, sink transport.ChunkSink, _ ...transport.RecvOpt) transport.PostedRecv {
	return t.post(ctx, p, tag, nil, n, sink)
}

func (t *Transport) post(ctx context.Context, p int, tag transport.Tag, buf []byte, n int, sink transport.ChunkSink) transport.PostedRecv {
	pe, err := t.peer("recv", p)
	if err != nil {
		return transport.FailedRecv(err)
	}
	if err := t.enter("recv", p); err != nil {
		return transport.FailedRecv(err)
	}
	r := pe.newPost(ctx, tag, buf, n, sink)
	pe.register(r)
	return r
}

// PeerFailures implements transport.Transport.
func (t *Transport) PeerFailures() ([]*transport.PeerError, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.failures), t.failCh
}

// noteFailure announces a peer's failure once per rank.
func (t *Transport) noteFailure(pe *transport.PeerError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing || pe.Peer == t.cfg.Rank {
		return
	}
	for _, f := range t.failures {
		if f.Peer == pe.Peer {
			return
		}
	}
	t.log.Error("shm: peer failed", "peer", pe.Peer, "err", pe.Err)
	t.failures = append(t.failures, pe)
	close(t.failCh)
	t.failCh = make(chan struct{})
}

// firstFailed is the first rank this transport saw fail, or -1.
func (t *Transport) firstFailed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failures) == 0 {
		return -1
	}
	return t.failures[0].Peer
}

// Close says goodbye to every peer (their calls fail with
// transport.ErrPeerLeft after the messages already sent) naming the first
// rank seen to fail, if any, and unmaps the segments once no call uses
// them.
func (t *Transport) Close() error { return t.close(stateLeft) }

// Abort closes without goodbye: peers treat it as a crash.
func (t *Transport) Abort() error { return t.close(stateCrashed) }

func (t *Transport) close(state uint32) error {
	t.closeOnce.Do(func() {
		culprit := t.firstFailed()
		t.mu.Lock()
		t.closing = true
		for _, m := range t.myRegions {
			u32(m, regOffState).Store(state)
		}
		t.mu.Unlock()
		close(t.closed)
		for _, pe := range t.peers {
			if pe != nil {
				pe.myCulprit.Store(int32(culprit))
				pe.myState.Store(state)
				pe.conn.Close() // the peer's bell reader sees our state now
				pe.signal()
			}
		}
		t.bg.Wait()
		t.ops.Wait()
		for _, pe := range t.peers {
			if pe != nil {
				unmap(pe.mem)
			}
		}
	})
	return nil
}

// errLeft is the error of a call on a peer that closed cleanly.
func leftError(op string, p int) error {
	return &transport.PeerError{Peer: p, Op: op, Err: transport.ErrPeerLeft}
}

// describe is used in tests and logs.
func (t *Transport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "shm rank %d of %d, peers %v", t.cfg.Rank, t.cfg.Size, t.cfg.Peers)
	return b.String()
}

// State describes every connection for hang diagnosis: per peer, both
// rings' positions and parked waiters, the message the pump is moving,
// and the tags with receives waiting or messages parked. It reads the
// shared words without stopping anything, so a busy transport's numbers
// are a moment's snapshot, not a consistent cut.
func (t *Transport) State() string {
	var b strings.Builder
	fmt.Fprintf(&b, "shm rank %d:", t.cfg.Rank)
	for _, pe := range t.peers {
		if pe == nil {
			continue
		}
		fmt.Fprintf(&b, "\n  peer %d: out head %d tail %d rxWait %d txWait %d; in head %d tail %d rxWait %d txWait %d; state %d/%d",
			pe.rank, pe.out.head.Load(), pe.out.tail.Load(), pe.out.rxWait.Load(), pe.out.txWait.Load(),
			pe.in.head.Load(), pe.in.tail.Load(), pe.in.rxWait.Load(), pe.in.txWait.Load(), pe.myState.Load(), pe.peerState.Load())
		fmt.Fprintf(&b, "; bells rung %d heard %d, bell goroutine %s", pe.rung.Load(), pe.heard.Load(), [...]string{"reading", "signalling", "pumping"}[pe.bellAt.Load()])
		select {
		case pe.pumpLock <- struct{}{}:
			c := pe.cur
			fmt.Fprintf(&b, "; rxTail %d", pe.rxTail)
			if c.active {
				fmt.Fprintf(&b, "; moving tag %#x len %d delivered %d (post %v park %v discard %v)", uint64(c.tag), c.n, c.d, c.post != nil, c.park != nil, c.discard)
			}
			<-pe.pumpLock
		default:
			b.WriteString("; pump busy")
		}
		pe.mu.Lock()
		for tag, q := range pe.queues {
			fmt.Fprintf(&b, "\n    tag %#x: %d receives waiting, %d messages parked", uint64(tag), len(q.posts), len(q.parks))
			for _, pk := range q.parks {
				fmt.Fprintf(&b, " [%d bytes]", len(pk.buf))
			}
		}
		pe.mu.Unlock()
	}
	return b.String()
}
