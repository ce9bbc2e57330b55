package rdma

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// ErrClosed is wrapped by operations on a closed Transport.
var ErrClosed = errors.New("rdma transport closed")

// Transport is a transport.Transport over RDMA verbs.
type Transport struct {
	cfg   Config
	dev   verbs.Device
	pd    verbs.PD
	cq    verbs.CQ
	cache *regCache
	peers []*peer // indexed by rank; nil at cfg.Rank

	slotSize int // hdrLen + EagerLimit

	stop       context.CancelFunc
	pollerDone chan struct{}
	stopWatch  chan struct{} // ends watchLinks (link.go); nil: not watching
	watchDone  chan struct{}
	closeOnce  sync.Once

	failMu   sync.Mutex
	failures []*transport.PeerError
	failNext chan struct{} // closed and replaced at every new peer failure
}

var _ transport.Transport = (*Transport)(nil)

// Caps implements transport.Transport: posted receives and failure
// notification are native; chunked receives go through a staging buffer
// and SendMulti sends each message on its own.
func (t *Transport) Caps() transport.Caps { return transport.Caps{PostedRecv: true, Notifies: true} }

// SendMulti implements transport.Transport with one Send each.
func (t *Transport) SendMulti(ctx context.Context, peer int, tag transport.Tag, bufs [][]byte) error {
	return transport.SendEach(t, ctx, peer, tag, bufs)
}

// PostRecvChunks implements transport.Transport through a staging buffer.
func (t *Transport) PostRecvChunks(ctx context.Context, peer int, tag transport.Tag, n int, sink transport.ChunkSink, opts ...transport.RecvOpt) transport.PostedRecv {
	return transport.StagedChunks(t, ctx, peer, tag, n, sink, opts...)
}

// PeerFailures implements transport.Transport: every peer whose
// connection failed (a failed completion, a lost or errored QP) so far,
// and a channel closed at the next failure.
func (t *Transport) PeerFailures() ([]*transport.PeerError, <-chan struct{}) {
	t.failMu.Lock()
	defer t.failMu.Unlock()
	return slices.Clone(t.failures), t.failNext
}

func (t *Transport) noteFailure(pe *transport.PeerError) {
	t.failMu.Lock()
	defer t.failMu.Unlock()
	t.failures = append(t.failures, pe)
	close(t.failNext)
	t.failNext = make(chan struct{})
}

// Dial connects this rank to every other rank of the group: it creates
// one RC queue pair per peer, exchanges addresses through cfg.Store and
// returns once every peer's QP is ready to send. ctx bounds the setup.
func Dial(ctx context.Context, cfg Config) (*Transport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg, slotSize: hdrLen + cfg.EagerLimit, peers: make([]*peer, cfg.Size), failNext: make(chan struct{})}
	if err := t.setup(ctx); err != nil {
		t.teardown()
		return nil, err
	}
	pctx, stop := context.WithCancel(context.Background())
	t.stop = stop
	t.pollerDone = make(chan struct{})
	go t.poll(pctx)
	if cfg.LinkTimeout > 0 {
		t.stopWatch, t.watchDone = make(chan struct{}), make(chan struct{})
		go t.watchLinks(t.stopWatch)
	}
	return t, nil
}

func (t *Transport) setup(ctx context.Context) error {
	cfg := &t.cfg
	var err error
	if t.dev, err = cfg.Provider.Open(cfg.Device); err != nil {
		return fmt.Errorf("rdma: rank %d: open device %q (%s): %w", cfg.Rank, cfg.Device, cfg.Provider.Name(), err)
	}
	port, err := t.dev.QueryPort(cfg.Port)
	if err != nil {
		return fmt.Errorf("rdma: rank %d: %w", cfg.Rank, err)
	}
	if port.State != verbs.PortActive {
		return fmt.Errorf("rdma: rank %d: %s port %d is not active (state %d)", cfg.Rank, t.dev.Name(), cfg.Port, port.State)
	}
	var gid verbs.GID
	if port.LinkLayer == "Ethernet" || port.LID == 0 {
		if gid, err = t.dev.QueryGID(cfg.Port, cfg.GIDIndex); err != nil {
			return fmt.Errorf("rdma: rank %d: %w", cfg.Rank, err)
		}
	}
	if t.pd, err = t.dev.AllocPD(); err != nil {
		return fmt.Errorf("rdma: rank %d: %w", cfg.Rank, err)
	}
	sqDepth := cfg.SendSlots + 16 // eager sends plus rendezvous writes
	depth := max(1, cfg.Size-1)*(sqDepth+cfg.RecvSlots) + 16
	if t.cq, err = t.dev.CreateCQ(depth); err != nil {
		return fmt.Errorf("rdma: rank %d: %w", cfg.Rank, err)
	}
	const access = verbs.AccessLocalWrite | verbs.AccessRemoteWrite
	t.cache = newRegCache(t.pd, access, cfg.RegCacheBytes)

	// Create every QP, post its receives, publish its address.
	for r := range cfg.Size {
		if r == cfg.Rank {
			continue
		}
		p, err := newPeer(t, r, sqDepth)
		if err != nil {
			return fmt.Errorf("rdma: rank %d: peer %d: %w", cfg.Rank, r, err)
		}
		t.peers[r] = p
		if err := p.qp.Modify(verbs.QPAttr{State: verbs.QPInit, Port: cfg.Port, Access: access}); err != nil {
			return &transport.PeerError{Peer: r, Op: "connect", Err: err}
		}
		if err := p.postInitialRecvs(); err != nil {
			return &transport.PeerError{Peer: r, Op: "connect", Err: err}
		}
		p.psn = rand.Uint32() & 0xffffff
		addr := verbs.QPAddr{LID: port.LID, GID: gid, QPN: p.qp.Num(), PSN: p.psn, MTU: port.ActiveMTU}
		if err := cfg.Store.Set(ctx, qpKey(cfg.Rank, r), encodeQPAddr(addr)); err != nil {
			return &transport.PeerError{Peer: r, Op: "connect", Err: fmt.Errorf("publish QP address: %w", err)}
		}
	}
	// Connect to each peer's QP.
	for r, p := range t.peers {
		if p == nil {
			continue
		}
		b, err := cfg.Store.Get(ctx, qpKey(r, cfg.Rank))
		if err != nil {
			return &transport.PeerError{Peer: r, Op: "connect", Err: fmt.Errorf("read QP address: %w", err)}
		}
		remote, ok := decodeQPAddr(b)
		if !ok {
			return &transport.PeerError{Peer: r, Op: "connect", Err: fmt.Errorf("malformed QP address (%d bytes)", len(b))}
		}
		mtu := min(port.ActiveMTU, remote.MTU)
		if err := p.qp.Modify(verbs.QPAttr{State: verbs.QPRTR, Remote: remote, MTU: mtu, GIDIndex: cfg.GIDIndex}); err != nil {
			return &transport.PeerError{Peer: r, Op: "connect", Err: err}
		}
		if err := p.qp.Modify(verbs.QPAttr{State: verbs.QPRTS, PSN: p.psn, Timeout: 14, RetryCount: 7, RNRRetry: 7}); err != nil {
			return &transport.PeerError{Peer: r, Op: "connect", Err: err}
		}
		if cfg.Logf != nil {
			cfg.Logf("rdma: rank %d -> rank %d: %s %s port %d, QP %d -> %d, MTU %d", cfg.Rank, r, cfg.Provider.Name(), t.dev.Name(), cfg.Port, p.qp.Num(), remote.QPN, mtu.Bytes())
		}
	}
	// Barrier: nobody sends before every peer's QP has reached RTR.
	if err := cfg.Store.Set(ctx, readyKey(cfg.Rank), []byte{1}); err != nil {
		return fmt.Errorf("rdma: rank %d: publish ready: %w", cfg.Rank, err)
	}
	for r, p := range t.peers {
		if p == nil {
			continue
		}
		if _, err := cfg.Store.Get(ctx, readyKey(r)); err != nil {
			return &transport.PeerError{Peer: r, Op: "connect", Err: fmt.Errorf("wait for ready: %w", err)}
		}
	}
	return nil
}

func qpKey(from, to int) string { return fmt.Sprintf("rdma/qp/%d-%d", from, to) }
func readyKey(r int) string     { return fmt.Sprintf("rdma/ready/%d", r) }

// Rank implements transport.Transport.
func (t *Transport) Rank() int { return t.cfg.Rank }

// Size implements transport.Transport.
func (t *Transport) Size() int { return t.cfg.Size }

// Provider names the verbs provider in use ("soft", "ibverbs").
func (t *Transport) Provider() string { return t.cfg.Provider.Name() }

// RegCacheStats reports registration cache hits, misses and the bytes
// currently registered for user buffers.
func (t *Transport) RegCacheStats() (hits, misses uint64, bytes int64) { return t.cache.stats() }

func (t *Transport) peer(op string, r int) (*peer, error) {
	if r < 0 || r >= t.cfg.Size {
		return nil, &transport.PeerError{Peer: r, Op: op, Err: fmt.Errorf("rank %d is not in a group of size %d", r, t.cfg.Size)}
	}
	if r == t.cfg.Rank {
		return nil, &transport.PeerError{Peer: r, Op: op, Err: errors.New("a rank cannot send to or receive from itself")}
	}
	return t.peers[r], nil
}

// Send implements transport.Transport.
func (t *Transport) Send(ctx context.Context, peer int, tag transport.Tag, buf []byte) error {
	p, err := t.peer("send", peer)
	if err != nil {
		return err
	}
	if len(buf) <= t.cfg.EagerLimit {
		return p.sendEager(ctx, tag, buf)
	}
	return p.sendRendezvous(ctx, tag, buf)
}

// Recv implements transport.Transport (options have no effect).
func (t *Transport) Recv(ctx context.Context, peer int, tag transport.Tag, buf []byte, _ ...transport.RecvOpt) error {
	p, err := t.peer("recv", peer)
	if err != nil {
		return err
	}
	return p.recv(ctx, tag, buf)
}

// PostRecv implements transport.Transport: the receive takes its place in
// the (peer, tag) order now, and a large buffer is registered now, so a
// rendezvous for it is answered straight into buf (no parking copy).
func (t *Transport) PostRecv(ctx context.Context, peer int, tag transport.Tag, buf []byte, _ ...transport.RecvOpt) transport.PostedRecv {
	p, err := t.peer("recv", peer)
	if err != nil {
		return transport.FailedRecv(err)
	}
	return p.postRecv(ctx, tag, buf)
}

// Close implements transport.Transport: every peer fails with ErrClosed,
// the QPs are destroyed and all verbs resources released.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		// Linger before destroying the queue pairs: a peer whose last send
		// we just received still waits for that send's acknowledgement,
		// and a queue pair torn down at once would flush it into an error
		// on the peer (TCP's close drains for the same reason).
		if t.cfg.Linger > 0 {
			time.Sleep(t.cfg.Linger)
		}
		if t.stopWatch != nil {
			close(t.stopWatch)
			<-t.watchDone
		}
		for _, p := range t.peers {
			if p != nil {
				p.fail(ErrClosed)
			}
		}
		t.stop()
		<-t.pollerDone
		t.teardown()
	})
	return nil
}

// teardown releases verbs resources in reverse order of creation.
func (t *Transport) teardown() {
	for _, p := range t.peers {
		if p != nil {
			p.destroy()
		}
	}
	if t.cache != nil {
		t.cache.close()
	}
	if t.cq != nil {
		t.cq.Close()
	}
	if t.pd != nil {
		t.pd.Close()
	}
	if t.dev != nil {
		t.dev.Close()
	}
}

// poll drains the completion queue and hands each completion to its peer.
func (t *Transport) poll(ctx context.Context) {
	defer close(t.pollerDone)
	wcs := make([]verbs.WorkCompletion, 64)
	for {
		n, err := t.cq.Poll(wcs)
		if err != nil {
			for _, p := range t.peers {
				if p != nil {
					p.fail(fmt.Errorf("completion queue: %w", err))
				}
			}
			return
		}
		if n == 0 {
			if err := t.cq.Wait(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				for _, p := range t.peers {
					if p != nil {
						p.fail(fmt.Errorf("completion queue: %w", err))
					}
				}
				return
			}
			continue
		}
		for _, wc := range wcs[:n] {
			r, _, _ := splitWRID(wc.ID)
			if r >= len(t.peers) || t.peers[r] == nil {
				continue // not ours: cannot happen with a faithful provider
			}
			t.peers[r].complete(wc)
		}
	}
}
