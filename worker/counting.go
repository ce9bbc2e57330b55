package worker

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/obs"
	"github.com/strand-ml/strand/transport"
)

// Peer relations used to label traffic. In a DP x TP x PP mesh a peer that
// differs from this rank in exactly one coordinate belongs to exactly one
// of this rank's dp, tp or pp groups; any other peer is "other".
var relations = [...]string{"dp", "tp", "pp", "other"}

// counting wraps the world transport and counts bytes and time of every
// send and receive (of every kind), labelled by the peer's mesh relation
// to this rank. It is the data behind strand_transport_bytes_total and
// strand_transport_seconds_total. Note that traffic of the world
// communicator to, say, a dp peer is counted under "dp": the labels
// describe which link carried the bytes, not which communicator sent them.
//
// It forwards every operation to the transport under it and reports that
// transport's Caps: a counter that hid a capability once sent every job's
// all-reduce down the staging receive path. It implements each method of
// transport.Transport itself (it embeds none), so a method added to the
// interface cannot bypass the count unnoticed.
type counting struct {
	t     transport.Transport
	rel   []uint8            // peer -> index into relations
	bytes [2][4]atomic.Int64 // [send=0/recv=1][relation]
	nanos [2][4]atomic.Int64
	// Receives not finished yet, per peer, and since when (unix nanos,
	// set when the peer's count leaves 0): which peer this rank waits on,
	// for the step watchdog (inflight.go). Two atomic adds per receive.
	pending []atomic.Int32
	since   []atomic.Int64
}

var (
	_ transport.Transport    = (*counting)(nil)
	_ transport.SharedMemory = (*counting)(nil)
)

// countTraffic wraps t for rank in mesh m and registers its counters in reg.
func countTraffic(t transport.Transport, m mesh.Mesh, rank int, reg *obs.Registry) (transport.Transport, error) {
	c := &counting{t: t, rel: make([]uint8, m.World()), pending: make([]atomic.Int32, m.World()), since: make([]atomic.Int64, m.World())}
	me := m.Coord(rank)
	for p := range c.rel {
		o := m.Coord(p)
		switch {
		case o.TP == me.TP && o.PP == me.PP:
			c.rel[p] = 0
		case o.DP == me.DP && o.PP == me.PP:
			c.rel[p] = 1
		case o.DP == me.DP && o.TP == me.TP:
			c.rel[p] = 2
		default:
			c.rel[p] = 3
		}
	}
	if err := reg.Register(trafficCollector{c}); err != nil {
		return nil, err
	}
	return c, nil
}

var (
	trafficBytes = prometheus.NewDesc("strand_transport_bytes_total",
		"bytes moved by collectives, by direction and the peer's mesh group", []string{"dir", "peer_group"}, nil)
	trafficSeconds = prometheus.NewDesc("strand_transport_seconds_total",
		"time spent in transport send/recv calls, by direction and the peer's mesh group", []string{"dir", "peer_group"}, nil)
)

// trafficCollector publishes the counting transport's atomics when the
// registry is scraped, so Send and Recv only add to them.
type trafficCollector struct{ c *counting }

func (t trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- trafficBytes
	ch <- trafficSeconds
}

func (t trafficCollector) Collect(ch chan<- prometheus.Metric) {
	for d, dir := range []string{"send", "recv"} {
		for i, rel := range relations {
			ch <- prometheus.MustNewConstMetric(trafficBytes, prometheus.CounterValue, float64(t.c.bytes[d][i].Load()), dir, rel)
			ch <- prometheus.MustNewConstMetric(trafficSeconds, prometheus.CounterValue, time.Duration(t.c.nanos[d][i].Load()).Seconds(), dir, rel)
		}
	}
}

func (c *counting) Rank() int            { return c.t.Rank() }
func (c *counting) Size() int            { return c.t.Size() }
func (c *counting) Caps() transport.Caps { return c.t.Caps() }
func (c *counting) Close() error         { return c.t.Close() }
func (c *counting) PeerFailures() ([]*transport.PeerError, <-chan struct{}) {
	return c.t.PeerFailures()
}

// ShareRegions forwards transport.SharedMemory (the collectives' shared
// windows), refusing with transport.ErrNoSharedMemory, at once and alike
// on every rank, when the transport under it has none. Traffic through
// the regions is memory, not sends and receives, so it is not counted;
// the flight recorder names the peer such a wait is for.
func (c *counting) ShareRegions(ctx context.Context, tag transport.Tag, group []int, n int) (*transport.Regions, error) {
	sm, ok := c.t.(transport.SharedMemory)
	if !ok {
		return nil, fmt.Errorf("traffic counter: the transport under it cannot share memory: %w", transport.ErrNoSharedMemory)
	}
	return sm.ShareRegions(ctx, tag, group, n)
}

func (c *counting) SendMulti(ctx context.Context, peer int, tag transport.Tag, bufs [][]byte) error {
	t0 := time.Now()
	err := c.t.SendMulti(ctx, peer, tag, bufs)
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	c.note(0, peer, n, t0)
	return err
}

func (c *counting) PostRecv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) transport.PostedRecv {
	t0 := time.Now()
	c.begin(peer, t0)
	return &countedRecv{c, c.t.PostRecv(ctx, peer, tag, buf, opts...), peer, len(buf), t0}
}

func (c *counting) PostRecvChunks(ctx context.Context, peer int, tag transport.Tag, n int, sink transport.ChunkSink, opts ...transport.RecvOpt) transport.PostedRecv {
	t0 := time.Now()
	c.begin(peer, t0)
	return &countedRecv{c, c.t.PostRecvChunks(ctx, peer, tag, n, sink, opts...), peer, n, t0}
}

// countedRecv counts a posted receive's bytes, and the time from posting
// to the end of its Wait, when it is waited for.
type countedRecv struct {
	c    *counting
	pr   transport.PostedRecv
	peer int
	n    int
	t0   time.Time
}

func (r *countedRecv) Wait() error {
	err := r.pr.Wait()
	r.c.finish(r.peer)
	r.c.note(1, r.peer, r.n, r.t0)
	return err
}

func (c *counting) Send(ctx context.Context, peer int, tag transport.Tag, buf []byte) error {
	t0 := time.Now()
	err := c.t.Send(ctx, peer, tag, buf)
	c.note(0, peer, len(buf), t0)
	return err
}

func (c *counting) Recv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) error {
	t0 := time.Now()
	c.begin(peer, t0)
	err := c.t.Recv(ctx, peer, tag, buf, opts...)
	c.finish(peer)
	c.note(1, peer, len(buf), t0)
	return err
}

// begin and finish bracket a receive from peer (see pending).
func (c *counting) begin(peer int, t0 time.Time) {
	if peer < 0 || peer >= len(c.pending) {
		return
	}
	if c.pending[peer].Add(1) == 1 {
		c.since[peer].Store(t0.UnixNano())
	}
}

func (c *counting) finish(peer int) {
	if peer >= 0 && peer < len(c.pending) {
		c.pending[peer].Add(-1)
	}
}

// waitingOn is the peer of this rank's oldest unfinished receive, or -1.
func (c *counting) waitingOn() int {
	best, at := -1, int64(0)
	for p := range c.pending {
		if c.pending[p].Load() <= 0 {
			continue
		}
		if t := c.since[p].Load(); best < 0 || t < at {
			best, at = p, t
		}
	}
	return best
}

func (c *counting) note(dir, peer, n int, t0 time.Time) {
	if peer < 0 || peer >= len(c.rel) {
		return
	}
	r := c.rel[peer]
	c.bytes[dir][r].Add(int64(n))
	c.nanos[dir][r].Add(int64(time.Since(t0)))
}
