// Package hybrid routes each peer's traffic over one of several
// transports: shared memory to ranks on this host, TCP or RDMA to the
// others (the topology the worker runtime builds with --transport auto).
//
// Every operation goes to the transport of its peer. Its Caps are what
// every transport under it has natively (transport.Caps.And): a
// collective that saw chunked receives where one route stages them would
// post dozens of segment-sized staging buffers ahead.
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
	caps       transport.Caps        // what every part has natively

	closed    chan struct{}
	closeOnce sync.Once
}

var _ transport.Transport = (*Transport)(nil)

// Route names a transport and the peers it carries.
type Route struct {
	Name      string
	Transport transport.Transport
	Peers     []int
}

// New routes every peer of rank in a world of size through exactly one of
// routes. Each route's transport must span the whole world (its Rank and
// Size agree); it may be connected to only the peers routed through it.
// The result is a *Transport (the interface type lets a caller that
// picks between one route's transport and a hybrid keep one variable).
func New(rank, size int, routes ...Route) (transport.Transport, error) {
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
	notifies := false
	for i, p := range t.parts {
		c := p.Caps()
		notifies = notifies || c.Notifies
		if i == 0 {
			t.caps = c
		} else {
			t.caps = t.caps.And(c)
		}
	}
	// Failures of the peers behind any route that notices them are
	// announced (PeerFailures merges the routes).
	t.caps.Notifies = notifies
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

// Caps implements transport.Transport: what every route has natively,
// and Notifies if any route notices failures.
func (t *Transport) Caps() transport.Caps { return t.caps }

// Recv implements transport.Transport.
func (t *Transport) Recv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) error {
	tr, err := t.to("recv", peer)
	if err != nil {
		return err
	}
	return tr.Recv(ctx, peer, tag, buf, opts...)
}

// SendMulti implements transport.Transport.
func (t *Transport) SendMulti(ctx context.Context, peer int, tag transport.Tag, bufs [][]byte) error {
	tr, err := t.to("send", peer)
	if err != nil {
		return err
	}
	return tr.SendMulti(ctx, peer, tag, bufs)
}

// PostRecv implements transport.Transport.
func (t *Transport) PostRecv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) transport.PostedRecv {
	tr, err := t.to("recv", peer)
	if err != nil {
		return transport.FailedRecv(err)
	}
	return tr.PostRecv(ctx, peer, tag, buf, opts...)
}

// PostRecvChunks implements transport.Transport.
func (t *Transport) PostRecvChunks(ctx context.Context, peer int, tag transport.Tag, n int, sink transport.ChunkSink, opts ...transport.RecvOpt) transport.PostedRecv {
	tr, err := t.to("recv", peer)
	if err != nil {
		return transport.FailedRecv(err)
	}
	return tr.PostRecvChunks(ctx, peer, tag, n, sink, opts...)
}

// PeerFailures implements transport.Transport: the failures every route
// has seen (one per rank), and a channel closed at the next one.
func (t *Transport) PeerFailures() ([]*transport.PeerError, <-chan struct{}) {
	var out []*transport.PeerError
	var nexts []<-chan struct{}
	for _, tr := range t.parts {
		failed, next := tr.PeerFailures()
		if next == nil {
			continue // this route does not notice failures
		}
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

var _ transport.SharedMemory = (*Transport)(nil)

// ShareRegions implements transport.SharedMemory when every other member
// of group is routed through one transport that shares memory (the
// ranks of this host); otherwise it fails at once with
// transport.ErrNoSharedMemory. Membership of a host is the same from
// every member's view, so the members agree without talking.
func (t *Transport) ShareRegions(ctx context.Context, tag transport.Tag, group []int, n int) (*transport.Regions, error) {
	var via transport.Transport
	var viaName string
	for _, p := range group {
		if p == t.rank {
			continue
		}
		tr, err := t.to("share", p)
		if err != nil {
			return nil, err
		}
		if via != nil && tr != via {
			return nil, fmt.Errorf("hybrid rank %d: group %v spans routes %s and %s: %w", t.rank, group, viaName, t.names[p], transport.ErrNoSharedMemory)
		}
		via, viaName = tr, t.names[p]
	}
	sm, ok := via.(transport.SharedMemory)
	if !ok {
		return nil, fmt.Errorf("hybrid rank %d: route %s does not share memory: %w", t.rank, viaName, transport.ErrNoSharedMemory)
	}
	return sm.ShareRegions(ctx, tag, group, n)
}
