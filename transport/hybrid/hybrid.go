// Package hybrid routes each peer's traffic over one of several
// transports: shared memory to ranks on this host, TCP or RDMA to the
// others (the topology the worker runtime builds with --transport auto).
//
// It offers posted and multi-message operations and failure notification
// whatever the transports under it provide (through transport's
// adapters), and chunked receives (transport.ChunkPoster) when every
// transport under it has them natively: a chunked receive adapted over
// staging buffers would let a collective keep dozens of segment-sized
// buffers in flight (it posts that many chunked receives ahead).
package hybrid

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/strand-ml/strand/transport"
)

// Transport is one rank's view of a job whose peers are reached through
// different transports.
type Transport struct {
	rank, size int
	via        []transport.Transport // per peer; nil for this rank
	names      []string              // per peer: the route's name
	parts      []transport.Transport // the distinct transports, in first-use order

	closed    chan struct{}
	closeOnce sync.Once
}

var (
	_ transport.Transport       = (*Transport)(nil)
	_ transport.FailureNotifier = (*Transport)(nil)
	_ transport.RecvPoster      = (*Transport)(nil)
	_ transport.MultiSender     = (*Transport)(nil)
	_ transport.ChunkPoster     = Chunked{}
)

// Chunked is a Transport whose routes all receive in chunks natively.
type Chunked struct{ *Transport }

// Route names a transport and the peers it carries.
type Route struct {
	Name      string
	Transport transport.Transport
	Peers     []int
}

// New routes every peer of rank in a world of size through exactly one of
// routes. Each route's transport must span the whole world (its Rank and
// Size agree); it may be connected to only the peers routed through it.
// The result is a *Transport, or a Chunked when every route's transport
// is a transport.ChunkPoster.
func New(rank, size int, routes ...Route) (transport.Transport, error) {
	t, err := build(rank, size, routes)
	if err != nil {
		return nil, err
	}
	for _, p := range t.parts {
		if _, ok := p.(transport.ChunkPoster); !ok {
			return t, nil
		}
	}
	return Chunked{t}, nil
}

func build(rank, size int, routes []Route) (*Transport, error) {
	t := &Transport{rank: rank, size: size, via: make([]transport.Transport, size), names: make([]string, size), closed: make(chan struct{})}
	for _, r := range routes {
		if r.Transport.Rank() != rank || r.Transport.Size() != size {
			return nil, fmt.Errorf("hybrid: route %s is rank %d of %d, want rank %d of %d", r.Name, r.Transport.Rank(), r.Transport.Size(), rank, size)
		}
		if !slices.Contains(t.parts, r.Transport) {
			t.parts = append(t.parts, r.Transport)
		}
		for _, p := range r.Peers {
			if p < 0 || p >= size || p == rank {
				return nil, fmt.Errorf("hybrid: route %s names invalid peer %d", r.Name, p)
			}
			if t.via[p] != nil {
				return nil, fmt.Errorf("hybrid: peer %d routed through both %s and %s", p, t.names[p], r.Name)
			}
			t.via[p], t.names[p] = r.Transport, r.Name
		}
	}
	for p := range size {
		if p != rank && t.via[p] == nil {
			return nil, fmt.Errorf("hybrid: rank %d has no route to rank %d", rank, p)
		}
	}
	return t, nil
}

// RouteOf names the transport that carries traffic to peer ("" for this
// rank).
func (t *Transport) RouteOf(peer int) string {
	if peer < 0 || peer >= t.size {
		return ""
	}
	return t.names[peer]
}

func (t *Transport) to(op string, peer int) (transport.Transport, error) {
	if peer < 0 || peer >= t.size || t.via[peer] == nil {
		return nil, &transport.PeerError{Peer: peer, Op: op, Err: fmt.Errorf("invalid peer for rank %d of %d", t.rank, t.size)}
	}
	return t.via[peer], nil
}

// Rank implements transport.Transport.
func (t *Transport) Rank() int { return t.rank }

// Size implements transport.Transport.
func (t *Transport) Size() int { return t.size }

// Send implements transport.Transport.
func (t *Transport) Send(ctx context.Context, peer int, tag transport.Tag, buf []byte) error {
	tr, err := t.to("send", peer)
	if err != nil {
		return err
	}
	return tr.Send(ctx, peer, tag, buf)
}

// Recv implements transport.Transport.
func (t *Transport) Recv(ctx context.Context, peer int, tag transport.Tag, buf []byte) error {
	tr, err := t.to("recv", peer)
	if err != nil {
		return err
	}
	return tr.Recv(ctx, peer, tag, buf)
}

// SendMulti implements transport.MultiSender.
func (t *Transport) SendMulti(ctx context.Context, peer int, tag transport.Tag, bufs [][]byte) error {
	tr, err := t.to("send", peer)
	if err != nil {
		return err
	}
	return transport.SendMultiOn(tr, ctx, peer, tag, bufs)
}

// PostRecv implements transport.RecvPoster.
func (t *Transport) PostRecv(ctx context.Context, peer int, tag transport.Tag, buf []byte) transport.PostedRecv {
	tr, err := t.to("recv", peer)
	if err != nil {
		return transport.FailedRecv(err)
	}
	return transport.PostRecvOn(tr, ctx, peer, tag, buf)
}

// PostRecvChunks implements transport.ChunkPoster.
func (t Chunked) PostRecvChunks(ctx context.Context, peer int, tag transport.Tag, n int, sink transport.ChunkSink) transport.PostedRecv {
	tr, err := t.to("recv", peer)
	if err != nil {
		return transport.FailedRecv(err)
	}
	return transport.PostRecvChunksOn(tr, ctx, peer, tag, n, sink)
}

// PeerFailures implements transport.FailureNotifier: the failures every
// route has seen (one per rank), and a channel closed at the next one.
func (t *Transport) PeerFailures() ([]*transport.PeerError, <-chan struct{}) {
	var out []*transport.PeerError
	var nexts []<-chan struct{}
	for _, tr := range t.parts {
		fn, ok := tr.(transport.FailureNotifier)
		if !ok {
			continue
		}
		failed, next := fn.PeerFailures()
		for _, f := range failed {
			if !slices.ContainsFunc(out, func(g *transport.PeerError) bool { return g.Peer == f.Peer }) {
				out = append(out, f)
			}
		}
		nexts = append(nexts, next)
	}
	switch len(nexts) {
	case 0:
		return out, nil
	case 1:
		return out, nexts[0]
	}
	merged := make(chan struct{})
	go func() {
		defer close(merged)
		cases := make(chan struct{}, len(nexts))
		for _, n := range nexts {
			go func() {
				select {
				case <-n:
				case <-t.closed:
				}
				cases <- struct{}{}
			}()
		}
		<-cases
	}()
	return out, merged
}

// Close closes every route's transport (each says its own goodbye).
func (t *Transport) Close() error {
	var first error
	t.closeOnce.Do(func() {
		close(t.closed)
		for _, tr := range t.parts {
			if err := tr.Close(); err != nil && first == nil {
				first = err
			}
		}
	})
	return first
}

// Abort closes every route's transport without goodbye where the
// transport can (peers treat it as a crash).
func (t *Transport) Abort() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		for _, tr := range t.parts {
			if a, ok := tr.(interface{ Abort() error }); ok {
				_ = a.Abort()
			} else {
				_ = tr.Close()
			}
		}
	})
	return nil
}
