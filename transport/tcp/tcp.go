package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strand-ml/strand/internal/ratelog"
	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
)

// Config describes one rank's place in a TCP job.
type Config struct {
	Rank, Size int              // this rank and the number of ranks
	Store      rendezvous.Store // where ranks publish their listening addresses
	JobID      string           // ranks of different jobs refuse each other (at most 255 bytes)
	Token      string           // shared secret; proven with HMAC, never sent
	Bind       string           // host:port, CIDR or interface name; see ResolveBind

	Streams          int           // sockets per peer pair (default 2)
	SplitBytes       int           // messages at least this long are split across streams (default 512 KiB)
	MaxMessage       int64         // largest message a peer may announce (default 16 GiB)
	SocketBuffer     int           // SO_SNDBUF / SO_RCVBUF in bytes (default 4 MiB; <0 keeps the kernel's)
	HandshakeTimeout time.Duration // per-socket handshake limit (default 10 s)
	// LinkTimeout is how long a data socket's path may be dead (no
	// acknowledgement, no keepalive answer) before the peer is failed
	// with an error naming the link (see link.go); default
	// DefaultLinkTimeout, < 0 leaves the kernel's defaults (minutes).
	LinkTimeout time.Duration
	// Spin is how long a small receive marked transport.Soon
	// polls for its message before parking its
	// goroutine (saves a thread wake-up per message). 0 picks
	// DefaultSpin when GOMAXPROCS is 1 (the receive polls the socket and
	// yields the core between polls) or this host has a core for every
	// rank on it, else no spinning (spinning goroutines would hold the
	// cores their readers or peers need); > 0 spins up to that long;
	// < 0 never spins. The budget adapts to how often spinning pays
	// (spinPolicy).
	Spin   time.Duration
	Logger *slog.Logger // refused connections and peer failures (default slog.Default())
	// TLS, when set, encrypts and mutually authenticates every socket
	// that leaves the host (see tls.go): the same config serves both
	// ends, so it must carry this rank's certificate, RootCAs and
	// ClientCAs, and ClientAuth tls.RequireAndVerifyClientCert. Sockets
	// to a loopback address stay plaintext (the bytes never leave the
	// kernel). The token handshake runs inside TLS as before.
	TLS *tls.Config
	// TLSLoopback runs TLS on loopback sockets too: to measure what TLS
	// costs on one host (strand bench collective --tls), and for tests.
	// Every rank of a job must set it alike.
	TLSLoopback bool
}

func (c *Config) fill() error {
	if c.Size <= 0 || c.Rank < 0 || c.Rank >= c.Size {
		return fmt.Errorf("tcp: rank %d outside world of size %d", c.Rank, c.Size)
	}
	if c.Store == nil {
		return errors.New("tcp: Config.Store is nil")
	}
	if len(c.JobID) > maxJobIDLen {
		return fmt.Errorf("tcp: job id is %d bytes, limit %d", len(c.JobID), maxJobIDLen)
	}
	if c.Streams <= 0 {
		c.Streams = 2
	}
	if c.Streams > 64 {
		return fmt.Errorf("tcp: %d streams per peer is more than 64", c.Streams)
	}
	if c.SplitBytes <= 0 {
		c.SplitBytes = 512 << 10
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = 16 << 30
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = 4 << 20
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.LinkTimeout == 0 {
		c.LinkTimeout = DefaultLinkTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TLS != nil && (len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil || c.TLS.RootCAs == nil || c.TLS.ClientCAs == nil || c.TLS.ClientAuth != tls.RequireAndVerifyClientCert) {
		return errors.New("tcp: Config.TLS must carry a certificate, RootCAs, ClientCAs and ClientAuth RequireAndVerifyClientCert (mutual authentication)")
	}
	return nil
}

// Transport is a connected TCP transport. It implements transport.Transport.
type Transport struct {
	cfg   Config
	ln    net.Listener
	log   *slog.Logger
	peers []*peer // indexed by rank; nil at this rank
	pool  bufPool
	spin  spinPolicy // how long small receives poll before parking (see Config.Spin)
	// refusals rate-limits the log lines about refused connections (one
	// per peer host and interval): a flood of garbage cannot fill a disk.
	refusals *ratelog.Gate

	mu       sync.Mutex
	conns    [][]sock      // during setup: [peer][stream]
	missing  int           // sockets still expected during setup
	ready    chan struct{} // closed when missing reaches 0
	failures []*transport.PeerError
	failCh   chan struct{}
	closing  bool

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // every goroutine of the transport
	readers   sync.WaitGroup // socket readers only (Close drains them)
}

var _ transport.Transport = (*Transport)(nil)

// Caps implements transport.Transport: everything is native; small
// receives marked transport.Soon poll unless Config.Spin turned it off.
func (t *Transport) Caps() transport.Caps {
	return transport.Caps{PostedRecv: true, ChunkedRecv: true, BatchedSend: true, Notifies: true, Polls: t.spin.max > 0}
}

func addrKey(job string, rank int) string { return "strand/tcp/" + job + "/addr/" + strconv.Itoa(rank) }

// Dial listens on cfg.Bind, publishes the address in cfg.Store and connects
// to every other rank (Config.Streams sockets each). It returns once every
// socket is up and authenticated, or fails when ctx ends, naming the ranks
// that never connected.
func Dial(ctx context.Context, cfg Config) (*Transport, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	addr, err := ResolveBind(cfg.Bind)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp rank %d: listen %s: %w", cfg.Rank, addr, err)
	}
	t := &Transport{
		refusals: ratelog.NewGate(0),
		cfg:      cfg,
		ln:       ln,
		log:      cfg.Logger.With("rank", cfg.Rank, "job", cfg.JobID),
		peers:    make([]*peer, cfg.Size),
		conns:    make([][]sock, cfg.Size),
		missing:  (cfg.Size - 1) * cfg.Streams,
		ready:    make(chan struct{}),
		failCh:   make(chan struct{}),
		closed:   make(chan struct{}),
	}
	for p := range t.conns {
		if p != cfg.Rank {
			t.conns[p] = make([]sock, cfg.Streams)
		}
	}
	if t.missing == 0 {
		close(t.ready)
	}
	t.wg.Add(1)
	go t.acceptLoop()

	if err := cfg.Store.Set(ctx, addrKey(cfg.JobID, cfg.Rank), []byte(ln.Addr().String())); err != nil {
		t.Close()
		return nil, fmt.Errorf("tcp rank %d: publish address: %w", cfg.Rank, err)
	}
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	dialErr := make(chan error, cfg.Size*cfg.Streams)
	for p := 0; p < cfg.Rank; p++ {
		for s := 0; s < cfg.Streams; s++ {
			go func() { dialErr <- t.dialPeer(dialCtx, p, s) }()
		}
	}
	for {
		select {
		case <-t.ready:
			t.start()
			return t, nil
		case err := <-dialErr:
			if err != nil {
				t.Close()
				return nil, fmt.Errorf("tcp rank %d: %w", cfg.Rank, err)
			}
		case <-ctx.Done():
			missing := t.missingPeers()
			t.Close()
			return nil, fmt.Errorf("tcp rank %d: connect: ranks %v not connected: %w", cfg.Rank, missing, ctx.Err())
		}
	}
}

func (t *Transport) missingPeers() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for p, cs := range t.conns {
		for _, c := range cs {
			if c.tcp == nil {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// dialPeer connects stream s to lower rank p, retrying refused connections
// until ctx ends; authentication failures are final.
func (t *Transport) dialPeer(ctx context.Context, p, s int) error {
	raw, err := t.cfg.Store.Get(ctx, addrKey(t.cfg.JobID, p))
	if err != nil {
		return &transport.PeerError{Peer: p, Op: "connect", Err: err}
	}
	addr := string(raw)
	var d net.Dialer
	backoff := 5 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			err = t.clientSetup(ctx, c.(*net.TCPConn), p, s, addr)
			if err == nil {
				return nil
			}
			c.Close()
			if errors.Is(err, errAuth) || errors.Is(err, errTLS) {
				t.log.Error("tcp: peer refused our credentials", "peer", p, "addr", addr, "err", err)
				return &transport.PeerError{Peer: p, Op: "connect", Err: err}
			}
		}
		select {
		case <-ctx.Done():
			return &transport.PeerError{Peer: p, Op: "connect", Err: fmt.Errorf("%s: %w (last error: %v)", addr, ctx.Err(), err)}
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (t *Transport) clientSetup(ctx context.Context, c *net.TCPConn, p, s int, addr string) error {
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	h := hello{Version: ProtocolVersion, Flags: flagLittleEndian, From: uint32(t.cfg.Rank), To: uint32(p),
		Size: uint32(t.cfg.Size), Stream: uint16(s), Streams: uint16(t.cfg.Streams), Nonce: nonce, JobID: t.cfg.JobID}
	_ = c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	sk := sock{tcp: c}
	if t.useTLS(c.RemoteAddr()) {
		if sk.tls, err = t.clientTLS(ctx, c, p, addr); err != nil {
			return err
		}
	}
	if err := clientHandshake(sk.rw(), []byte(t.cfg.Token), h); err != nil {
		return err
	}
	_ = c.SetDeadline(time.Time{})
	return t.register(p, s, sk)
}

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			t.mu.Lock()
			closing := t.closing
			t.mu.Unlock()
			if !closing {
				t.log.Error("tcp: accept failed; no more peers can connect", "err", err)
			}
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serverSetup(c.(*net.TCPConn))
		}()
	}
}

// serverSetup authenticates an incoming socket. Anything wrong (garbage,
// a stranger, a wrong token, a duplicate) is logged and closed; it never
// touches the running job.
func (t *Transport) serverSetup(c *net.TCPConn) {
	_ = c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	sk := sock{tcp: c}
	var err error
	if t.useTLS(c.LocalAddr()) {
		sk.tls, err = t.serverTLS(c)
	}
	var h hello
	if err == nil {
		h, err = serverHandshake(sk.rw(), []byte(t.cfg.Token), t.cfg.Rank, t.cfg.Size, t.cfg.Streams, t.cfg.JobID)
	}
	if err == nil {
		_ = c.SetDeadline(time.Time{})
		err = t.register(int(h.From), int(h.Stream), sk)
	}
	if err != nil {
		remote := c.RemoteAddr().String()
		if ok, n := t.refusals.Allow(remote, "refused"); ok {
			t.log.Warn("tcp: refused connection", "remote", remote, "err", err, "repeats_suppressed", n)
		}
		c.Close()
	}
}

// register records an authenticated socket during setup.
func (t *Transport) register(p, s int, sk sock) error {
	c := sk.tcp
	_ = c.SetNoDelay(true)
	watchLink(c, t.cfg.LinkTimeout)
	if t.cfg.SocketBuffer > 0 {
		_ = c.SetReadBuffer(t.cfg.SocketBuffer)
		_ = c.SetWriteBuffer(t.cfg.SocketBuffer)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return errors.New("transport closed")
	}
	if t.missing == 0 || t.conns[p][s].tcp != nil {
		return fmt.Errorf("duplicate connection for rank %d stream %d", p, s)
	}
	t.conns[p][s] = sk
	t.missing--
	if t.missing == 0 {
		close(t.ready)
	}
	return nil
}

// start builds the peers from the registered sockets and starts the
// reader (and part writer) goroutines.
func (t *Transport) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, cs := range t.conns {
		if cs == nil {
			continue
		}
		t.peers[p] = newPeer(t, p, cs)
	}
	t.spin.max = t.spinTime()
	if t.tlsInUse() {
		// Decrypted bytes wait inside the TLS layer, where polling the
		// socket cannot see them: receives park instead of spinning.
		t.spin.max = 0
	}
	t.spin.soloP = runtime.GOMAXPROCS(0) == 1
	t.spin.cur.Store(int64(t.spin.max))
	for _, p := range t.peers {
		if p == nil {
			continue
		}
		for i, s := range p.streams {
			t.wg.Add(1)
			t.readers.Add(1)
			go func() { defer t.wg.Done(); defer t.readers.Done(); p.readLoop(s, i) }()
			if i > 0 {
				t.wg.Add(1)
				p.writers.Add(1)
				go func() { defer t.wg.Done(); defer p.writers.Done(); p.partWriter(s) }()
			}
		}
		t.wg.Add(1)
		go func() { defer t.wg.Done(); p.writers.Wait(); close(p.writersGone) }()
	}
	t.conns = nil
}

// DefaultSpin is Config.Spin's automatic value: about two loopback round
// trips, so that a receive posted just before its message arrives (the
// common case in a latency-bound collective) never parks.
const DefaultSpin = 50 * time.Microsecond

// spinTime resolves Config.Spin once the sockets are up: ranks whose
// sockets connect to this host's own address (or loopback) share its cores.
func (t *Transport) spinTime() time.Duration {
	switch {
	case t.cfg.Spin < 0:
		return 0
	case t.cfg.Spin > 0:
		return t.cfg.Spin
	}
	local := 1 // this rank
	for _, p := range t.peers {
		if p == nil {
			continue
		}
		c := p.streams[0].conn
		la, lok := c.LocalAddr().(*net.TCPAddr)
		ra, rok := c.RemoteAddr().(*net.TCPAddr)
		if lok && rok && (ra.IP.IsLoopback() || ra.IP.Equal(la.IP)) {
			local++
		}
	}
	switch {
	case runtime.GOMAXPROCS(0) == 1:
		// Receives poll the socket and yield the core between polls
		// (pending.spinSolo), which pays even when the host's ranks
		// outnumber its cores, as Open MPI's yield-when-idle does.
		return DefaultSpin
	case local > runtime.NumCPU():
		// Spinning goroutines would hold cores whose reader goroutines,
		// or whose peers, must run.
		return 0
	}
	return DefaultSpin
}

// spinPolicy adapts how long small receives spin: a spin that sees its
// message doubles the next budget (up to max), one that gives up halves
// it, and below minSpin spinning stops, except for one probe every
// spinProbe receives. So on an idle machine where messages come within a
// round trip receives spin, and on an oversubscribed one, where spinning
// only steals the core the sender needs, they soon stop.
type spinPolicy struct {
	max   time.Duration
	soloP bool         // GOMAXPROCS is 1: poll the socket, not the reader (pending.spinSolo)
	cur   atomic.Int64 // current budget in nanoseconds; 0: not spinning
	skip  atomic.Uint32
}

const (
	minSpin   = 2 * time.Microsecond
	spinProbe = 64
)

func (s *spinPolicy) budget() time.Duration {
	if s.max <= 0 {
		return 0
	}
	if d := time.Duration(s.cur.Load()); d > 0 {
		return d
	}
	if s.skip.Add(1)%spinProbe != 0 {
		return 0
	}
	return s.max / 4
}

func (s *spinPolicy) record(hit bool, d time.Duration) {
	if hit {
		s.cur.Store(int64(min(s.max, 2*d)))
		return
	}
	if d /= 2; d < minSpin {
		d = 0
	}
	s.cur.Store(int64(d))
}

// Rank implements transport.Transport.
func (t *Transport) Rank() int { return t.cfg.Rank }

// Size implements transport.Transport.
func (t *Transport) Size() int { return t.cfg.Size }

// Addr is the address this rank listens on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

func (t *Transport) peer(op string, rank int) (*peer, error) {
	if rank < 0 || rank >= t.cfg.Size {
		return nil, &transport.PeerError{Peer: rank, Op: op, Err: fmt.Errorf("rank outside world of size %d", t.cfg.Size)}
	}
	if rank == t.cfg.Rank {
		return nil, &transport.PeerError{Peer: rank, Op: op, Err: errors.New("a rank cannot message itself")}
	}
	return t.peers[rank], nil
}

// Send implements transport.Transport.
func (t *Transport) Send(ctx context.Context, rank int, tag transport.Tag, buf []byte) error {
	p, err := t.peer("send", rank)
	if err != nil {
		return err
	}
	return p.send(ctx, tag, buf)
}

// SendMulti implements transport.Transport: up to maxBatch small
// messages go out in one vectored write.
func (t *Transport) SendMulti(ctx context.Context, rank int, tag transport.Tag, bufs [][]byte) error {
	p, err := t.peer("send", rank)
	if err != nil {
		return err
	}
	return p.sendMulti(ctx, tag, bufs)
}

// Recv implements transport.Transport.
func (t *Transport) Recv(ctx context.Context, rank int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) error {
	p, err := t.peer("recv", rank)
	if err != nil {
		return err
	}
	return p.post(ctx, tag, buf, len(buf), nil, transport.RecvOpts(opts)).Wait()
}

// PostRecv implements transport.Transport.
func (t *Transport) PostRecv(ctx context.Context, rank int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) transport.PostedRecv {
	p, err := t.peer("recv", rank)
	if err != nil {
		return transport.FailedRecv(err)
	}
	return p.post(ctx, tag, buf, len(buf), nil, transport.RecvOpts(opts))
}

// PostRecvChunks implements transport.Transport: the message's bytes are
// handed to sink by the socket reader as they arrive, straight out of its
// read buffer, in chunks of at most 256 KiB.
func (t *Transport) PostRecvChunks(ctx context.Context, rank int, tag transport.Tag, n int, sink transport.ChunkSink, opts ...transport.RecvOpt) transport.PostedRecv {
	p, err := t.peer("recv", rank)
	if err != nil {
		return transport.FailedRecv(err)
	}
	if n < 0 || sink == nil {
		return transport.FailedRecv(&transport.PeerError{Peer: rank, Op: "recv", Err: fmt.Errorf("chunked receive needs a sink and a length >= 0 (got %d)", n)})
	}
	return p.post(ctx, tag, nil, n, sink, transport.RecvOpts(opts))
}

// PeerFailures implements transport.Transport.
func (t *Transport) PeerFailures() ([]*transport.PeerError, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*transport.PeerError(nil), t.failures...), t.failCh
}

// noteFailure announces a peer's failure (PeerFailures), once per peer:
// the first report of a rank wins (it may come from another rank's
// goodbye, see noteReported, before this rank's own sockets break).
func (t *Transport) noteFailure(pe *transport.PeerError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return
	}
	for _, f := range t.failures {
		if f.Peer == pe.Peer {
			return
		}
	}
	t.log.Error("tcp: peer failed", "peer", pe.Peer, "err", pe.Err)
	t.failures = append(t.failures, pe)
	close(t.failCh)
	t.failCh = make(chan struct{})
}

// noteReported announces rank culprit's failure as reported by rank
// reporter's goodbye: reporter left the job because it saw culprit fail.
// Collectives waiting on reporter then name culprit, the root cause,
// rather than a bare "peer left", even while culprit's own sockets to this
// rank still look healthy (the reset may be on its way, or culprit may be
// cut off from reporter only).
func (t *Transport) noteReported(culprit, reporter int) {
	if culprit < 0 || culprit >= t.cfg.Size || culprit == t.cfg.Rank || culprit == reporter {
		return // nothing this rank can act on
	}
	t.noteFailure(&transport.PeerError{Peer: culprit, Op: "connection",
		Err: fmt.Errorf("reported by rank %d, which left the job after seeing rank %d fail", reporter, culprit)})
}

// byeWhy is the ByeWhy of the goodbye to peer p: 1 + the first rank other
// than p that this rank saw fail, or 0.
func (t *Transport) byeWhy(p int) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.failures {
		if f.Peer != p {
			return uint32(f.Peer) + 1
		}
	}
	return 0
}

var errClosed = errors.New("transport closed")

// closeGrace bounds how long Close waits for peers to close their side.
const closeGrace = 250 * time.Millisecond

// Close implements transport.Transport: it says goodbye to every peer (so
// they see a clean exit, not a failure), closes every socket, fails
// pending calls and waits for the transport's goroutines to exit.
func (t *Transport) Close() error { return t.close(true) }

// Abort closes like Close but without goodbye: to peers it looks like a
// crash, and they announce it as a failure. For fail-fast shutdown and for
// tests that simulate a killed process.
func (t *Transport) Abort() error { return t.close(false) }

// close with graceful false skips the goodbye.
func (t *Transport) close(graceful bool) error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closing = true
		for _, cs := range t.conns {
			for _, c := range cs {
				if c.tcp != nil {
					c.tcp.Close()
				}
			}
		}
		t.mu.Unlock()
		t.ln.Close()
		if graceful {
			for _, p := range t.peers {
				if p != nil {
					p.sayGoodbye(t.byeWhy(p.rank))
				}
			}
			// Half-close and keep reading until each peer closes too (or
			// a short grace period ends): closing a socket with unread
			// data makes the kernel send a reset, which can destroy our
			// goodbye before the peer reads it and so look like a crash.
			for _, p := range t.peers {
				if p != nil {
					for _, s := range p.streams {
						if s.tls != nil {
							// close_notify (the peer reads a clean EOF); the
							// deadline ends a write stuck on a stalled peer,
							// which holds the session's write lock
							_ = s.conn.SetWriteDeadline(time.Now().Add(closeGrace))
							_ = s.tls.CloseWrite()
						}
						_ = s.conn.CloseWrite()
					}
				}
			}
			drained := make(chan struct{})
			go func() { t.readers.Wait(); close(drained) }()
			timer := time.NewTimer(closeGrace)
			select {
			case <-drained:
			case <-timer.C:
			}
			timer.Stop()
		}
		close(t.closed)
		for _, p := range t.peers {
			if p != nil {
				p.fail(errClosed)
			}
		}
		t.wg.Wait()
	})
	return nil
}
