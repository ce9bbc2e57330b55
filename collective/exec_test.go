package collective

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/strand-ml/strand/transport"
)

// claimCaps reports the capabilities it is given over another transport.
// Over loopback every claim is safe: its posted receives run when waited
// for and its chunked receives are staged, so this drives the receive
// lane's window depths without changing what arrives.
type claimCaps struct {
	transport.Transport
	caps transport.Caps
}

func (c claimCaps) Caps() transport.Caps { return c.caps }

func claimWorld(t *testing.T, n int, caps transport.Caps) []transport.Transport {
	ts := loopbackWorld(t, n)
	for r := range ts {
		ts[r] = claimCaps{ts[r], caps}
	}
	return ts
}

var capsSets = map[string]transport.Caps{
	"none":    {Notifies: true},
	"posted":  {PostedRecv: true, Notifies: true},
	"chunked": {PostedRecv: true, ChunkedRecv: true, BatchedSend: true, Notifies: true},
}

// The receive lane posts 2, 8 or 64 receives ahead by the transport's
// Caps: every depth runs every collective (flat and hierarchical, with
// their fences) and gives an all-reduce the same bits.
func TestReceiveLaneAtEveryDepth(t *testing.T) {
	const count = 20011
	rng := rand.New(rand.NewSource(3))
	inputs := make([][]float32, 4)
	for r := range inputs {
		inputs[r] = make([]float32, count)
		for i := range inputs[r] {
			inputs[r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(6)-3)))
		}
	}
	var first []float32
	for name, caps := range capsSets {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{2, 3, 4} {
				for _, c := range []int{13, 1031, count} {
					checkAllOps(t, claimWorld(t, n, caps), c, Options{Name: "ops", SmallBytes: 1, SegmentBytes: 256})
				}
			}
			checkAllOps(t, claimWorld(t, 4, caps), 1031, Options{Name: "hier", SmallBytes: 1, SegmentBytes: 256, Nodes: []string{"a", "a", "b", "b"}, HierarchicalBytes: 1})
			results := make([][]float32, 4)
			onAll(t, claimWorld(t, 4, caps), Options{Name: "bits", SegmentBytes: 4096}, func(r int, c *Comm) error {
				buf := F32(append([]float32(nil), inputs[r]...))
				results[r] = buf
				return c.AllReduce(context.Background(), buf, Sum)
			})
			if first == nil {
				first = results[0]
			}
			for r := range results {
				for i := range results[r] {
					if math.Float32bits(results[r][i]) != math.Float32bits(first[i]) {
						t.Fatalf("rank %d element %d: %v, another depth gave %v", r, i, results[r][i], first[i])
					}
				}
			}
		})
	}
}

// The default segment follows Caps.ChunkedRecv.
func TestDefaultSegmentFollowsCaps(t *testing.T) {
	for name, caps := range capsSets {
		c, err := New(claimWorld(t, 2, caps)[0], []int{0, 1}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := 1 << 20
		if caps.ChunkedRecv {
			want = 4 << 20
		}
		if got := c.opts.SegmentBytes; got != want {
			t.Errorf("%s: segment %d, want %d", name, got, want)
		}
		if got, want := c.postDepth(), map[string]int{"none": 2, "posted": 8, "chunked": chunkPostDepth}[name]; got != want {
			t.Errorf("%s: post depth %d, want %d", name, got, want)
		}
		c.Close()
	}
}

// optsSeen records the options of every receive made through it.
type optsSeen struct {
	transport.Transport
	caps       transport.Caps
	soon, slow atomic.Int64 // receives with and without transport.Soon
}

func (o *optsSeen) Caps() transport.Caps { return o.caps }

func (o *optsSeen) note(opts []transport.RecvOpt) {
	if transport.RecvOpts(opts).Has(transport.Soon) {
		o.soon.Add(1)
	} else {
		o.slow.Add(1)
	}
}

func (o *optsSeen) Recv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) error {
	o.note(opts)
	return o.Transport.Recv(ctx, peer, tag, buf, opts...)
}

func (o *optsSeen) PostRecv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) transport.PostedRecv {
	o.note(opts)
	return o.Transport.PostRecv(ctx, peer, tag, buf, opts...)
}

func (o *optsSeen) PostRecvChunks(ctx context.Context, peer int, tag transport.Tag, n int, sink transport.ChunkSink, opts ...transport.RecvOpt) transport.PostedRecv {
	o.note(opts)
	return o.Transport.PostRecvChunks(ctx, peer, tag, n, sink, opts...)
}

// The latency hint is a receive option: every receive of a small
// (inline) call carries transport.Soon, no receive of a pipelined call
// does, whichever receive path the transport's Caps select.
func TestSmallCallsMarkTheirReceivesSoon(t *testing.T) {
	for name, caps := range capsSets {
		t.Run(name, func(t *testing.T) {
			ts := loopbackWorld(t, 3)
			seen := make([]*optsSeen, len(ts))
			for r := range ts {
				seen[r] = &optsSeen{Transport: ts[r], caps: caps}
				ts[r] = seen[r]
			}
			for _, c := range []struct {
				count      int
				soon, slow bool
			}{{16, true, false}, {1 << 16, false, true}} {
				for _, o := range seen {
					o.soon.Store(0)
					o.slow.Store(0)
				}
				onAll(t, ts, Options{Name: fmt.Sprint(c.count)}, func(r int, cm *Comm) error {
					return cm.AllReduce(context.Background(), make(F32, c.count), Sum)
				})
				for r, o := range seen {
					if got := o.soon.Load() > 0; got != c.soon {
						t.Errorf("%d elements, rank %d: %d receives marked Soon", c.count, r, o.soon.Load())
					}
					if got := o.slow.Load() > 0; got != c.slow {
						t.Errorf("%d elements, rank %d: %d receives not marked Soon", c.count, r, o.slow.Load())
					}
				}
			}
		})
	}
}
