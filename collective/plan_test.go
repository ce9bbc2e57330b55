package collective

import (
	"context"
	"fmt"
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/strand-ml/strand/transport"
)

// simulate runs every rank's plan together in memory, in a random
// interleaving, moving float64 values (exact for the small integers used
// here). It fails on a size mismatch, a deadlock, or a leftover message.
func simulate(t *testing.T, plans []*Plan, bufs [][2][]float64, rng *rand.Rand) {
	t.Helper()
	n := len(plans)
	type link struct{ src, dst int }
	queues := map[link][][]float64{}
	si, ri := make([]int, n), make([]int, n)
	for r, p := range plans {
		for _, c := range p.Copies {
			copy(bufs[r][c.DstBuf][c.DstOff:c.DstOff+c.N], bufs[r][c.SrcBuf][c.SrcOff:c.SrcOff+c.N])
		}
	}
	for {
		var moves [][2]int // (rank, lane)
		for r, p := range plans {
			if si[r] < len(p.Sends) && ri[r] >= p.Sends[si[r]].After {
				moves = append(moves, [2]int{r, 0})
			}
			if ri[r] < len(p.Recvs) {
				s := p.Recvs[ri[r]]
				if si[r] >= s.After && len(queues[link{s.Peer, r}]) > 0 {
					moves = append(moves, [2]int{r, 1})
				}
			}
		}
		if len(moves) == 0 {
			break
		}
		m := moves[rng.Intn(len(moves))]
		r, p := m[0], plans[m[0]]
		if m[1] == 0 {
			s := p.Sends[si[r]]
			l := link{r, s.Peer}
			queues[l] = append(queues[l], append([]float64(nil), bufs[r][s.Buf][s.Off:s.Off+s.N]...))
			si[r]++
			continue
		}
		s := p.Recvs[ri[r]]
		l := link{s.Peer, r}
		msg := queues[l][0]
		queues[l] = queues[l][1:]
		if len(msg) != s.N {
			t.Fatalf("rank %d recv step %d from %d: message of %d elements, plan expects %d", r, ri[r], s.Peer, len(msg), s.N)
		}
		dst := bufs[r][s.Buf][s.Off : s.Off+s.N]
		for i := range dst {
			if s.Reduce {
				dst[i] += msg[i]
			} else {
				dst[i] = msg[i]
			}
		}
		ri[r]++
	}
	for r, p := range plans {
		if si[r] != len(p.Sends) || ri[r] != len(p.Recvs) {
			t.Fatalf("deadlock: rank %d stopped at send %d/%d, recv %d/%d", r, si[r], len(p.Sends), ri[r], len(p.Recvs))
		}
	}
	for l, q := range queues {
		if len(q) > 0 {
			t.Fatalf("%d unreceived messages %d->%d", len(q), l.src, l.dst)
		}
	}
}

// input gives rank r's element i a value whose sums stay exact.
func input(r, i int) float64 { return float64((r+1)*1000 + i%997) }

func newBufs(n, count int) [][2][]float64 {
	bufs := make([][2][]float64, n)
	for r := range bufs {
		bufs[r][0] = make([]float64, count)
		bufs[r][1] = make([]float64, count)
		for i := range bufs[r][0] {
			bufs[r][0][i] = input(r, i)
		}
	}
	return bufs
}

func sumAt(n, i int) float64 {
	s := 0.0
	for r := 0; r < n; r++ {
		s += input(r, i)
	}
	return s
}

var (
	planSizes = []int{1, 2, 3, 4, 5, 6, 7, 8}
	planCount = []int{0, 1, 2, 7, 13, 64, 1031}
	planSegs  = []int{1, 3, 1 << 20}
)

func forPlans(t *testing.T, f func(t *testing.T, n, count, seg int, rng *rand.Rand)) {
	for _, n := range planSizes {
		for _, count := range planCount {
			for _, seg := range planSegs {
				t.Run(fmt.Sprintf("n%d/count%d/seg%d", n, count, seg), func(t *testing.T) {
					f(t, n, count, seg, rand.New(rand.NewSource(int64(n*1000+count+seg))))
				})
			}
		}
	}
}

func TestRingAllReducePlan(t *testing.T) {
	forPlans(t, func(t *testing.T, n, count, seg int, rng *rand.Rand) {
		plans := make([]*Plan, n)
		for r := range plans {
			plans[r] = ringPlan(n, r, count, seg, true, true)
		}
		bufs := newBufs(n, count)
		simulate(t, plans, bufs, rng)
		for r := range bufs {
			for i, v := range bufs[r][0] {
				if v != sumAt(n, i) {
					t.Fatalf("rank %d element %d = %v, want %v", r, i, v, sumAt(n, i))
				}
			}
		}
	})
}

func TestRingReduceScatterAndAllGatherPlans(t *testing.T) {
	forPlans(t, func(t *testing.T, n, count, seg int, rng *rand.Rand) {
		plans := make([]*Plan, n)
		for r := range plans {
			plans[r] = ringPlan(n, r, count, seg, true, false)
		}
		bufs := newBufs(n, count)
		simulate(t, plans, bufs, rng)
		for r := range bufs {
			lo, hi := Chunk(count, n, r)
			for i := lo; i < hi; i++ {
				if bufs[r][0][i] != sumAt(n, i) {
					t.Fatalf("reduce-scatter: rank %d element %d = %v, want %v", r, i, bufs[r][0][i], sumAt(n, i))
				}
			}
		}
		for r := range plans {
			plans[r] = ringPlan(n, r, count, seg, false, true)
		}
		bufs = newBufs(n, count)
		simulate(t, plans, bufs, rng)
		for r := range bufs {
			for c := 0; c < n; c++ {
				lo, hi := Chunk(count, n, c)
				for i := lo; i < hi; i++ {
					if bufs[r][0][i] != input(c, i) {
						t.Fatalf("all-gather: rank %d element %d = %v, want rank %d's %v", r, i, bufs[r][0][i], c, input(c, i))
					}
				}
			}
		}
	})
}

func TestRecursiveDoublingPlan(t *testing.T) {
	forPlans(t, func(t *testing.T, n, count, seg int, rng *rand.Rand) {
		plans := make([]*Plan, n)
		for r := range plans {
			plans[r] = recursiveDoublingPlan(n, r, count)
		}
		bufs := newBufs(n, count)
		simulate(t, plans, bufs, rng)
		for r := range bufs {
			for i, v := range bufs[r][0] {
				if v != sumAt(n, i) {
					t.Fatalf("rank %d element %d = %v, want %v", r, i, v, sumAt(n, i))
				}
			}
		}
		// Exactly one final step per rank that reduces (Avg divides there).
		for r, p := range plans {
			finals := 0
			for _, s := range p.Recvs {
				if s.Final {
					finals++
				}
			}
			if count > 0 && n > 1 && r < pow2Floor(n) && finals != 1 {
				t.Fatalf("rank %d has %d final steps", r, finals)
			}
		}
	})
}

func pow2Floor(n int) int {
	p := 1
	for p*2 <= n {
		p *= 2
	}
	return p
}

func TestBroadcastAndReducePlans(t *testing.T) {
	forPlans(t, func(t *testing.T, n, count, seg int, rng *rand.Rand) {
		roots := []int{0, n / 2, n - 1}
		if count < 20 { // every root, where it is cheap
			roots = roots[:0]
			for r := 0; r < n; r++ {
				roots = append(roots, r)
			}
		}
		for _, root := range roots {
			for name, mk := range map[string]func(r int) *Plan{
				"tree":  func(r int) *Plan { return treeBroadcastPlan(n, r, root, count) },
				"chain": func(r int) *Plan { return chainBroadcastPlan(n, r, root, count, seg) },
			} {
				plans := make([]*Plan, n)
				for r := range plans {
					plans[r] = mk(r)
				}
				bufs := newBufs(n, count)
				simulate(t, plans, bufs, rng)
				for r := range bufs {
					for i, v := range bufs[r][0] {
						if v != input(root, i) {
							t.Fatalf("%s broadcast root %d: rank %d element %d = %v", name, root, r, i, v)
						}
					}
				}
			}
			for name, mk := range map[string]func(r int) *Plan{
				"tree": func(r int) *Plan { return treeReducePlan(n, r, root, count) },
				"ring": func(r int) *Plan { return ringReducePlan(n, r, root, count, seg) },
			} {
				plans := make([]*Plan, n)
				for r := range plans {
					plans[r] = mk(r)
				}
				bufs := newBufs(n, count)
				simulate(t, plans, bufs, rng)
				for i, v := range bufs[root][0] {
					if v != sumAt(n, i) {
						t.Fatalf("%s reduce root %d: element %d = %v, want %v", name, root, i, v, sumAt(n, i))
					}
				}
			}
		}
	})
}

func TestBarrierAndAllToAllPlans(t *testing.T) {
	for _, n := range planSizes {
		rng := rand.New(rand.NewSource(int64(n)))
		plans := make([]*Plan, n)
		for r := range plans {
			plans[r] = barrierPlan(n, r)
		}
		simulate(t, plans, newBufs(n, 0), rng)
		for _, block := range []int{0, 1, 5} {
			for r := range plans {
				plans[r] = allToAllPlan(n, r, block)
			}
			bufs := newBufs(n, n*block)
			simulate(t, plans, bufs, rng)
			for r := range bufs {
				for from := 0; from < n; from++ {
					for j := 0; j < block; j++ {
						if got, want := bufs[r][1][from*block+j], input(from, r*block+j); got != want {
							t.Fatalf("n=%d block=%d: rank %d got %v from %d, want %v", n, block, r, got, from, want)
						}
					}
				}
			}
		}
	}
}

func TestChunkCoversEverything(t *testing.T) {
	for n := 1; n <= 9; n++ {
		for count := 0; count < 40; count++ {
			next := 0
			for i := 0; i < n; i++ {
				lo, hi := Chunk(count, n, i)
				if lo != next || hi < lo || hi-lo > count/n+1 {
					t.Fatalf("Chunk(%d, %d, %d) = [%d, %d)", count, n, i, lo, hi)
				}
				next = hi
			}
			if next != count {
				t.Fatalf("chunks of %d over %d end at %d", count, n, next)
			}
		}
	}
}

// At 4 ranks recursive doubling talks only to the ring neighbours, who get
// the rank's fingerprint anyway: 2 peers per rank, not 3.
func TestRecursiveDoublingAtFourRanksTalksToRingNeighbours(t *testing.T) {
	const n = 4
	for me := 0; me < n; me++ {
		p := recursiveDoublingPlan(n, me, 1024)
		peers := map[int]bool{}
		for _, s := range p.Sends {
			peers[s.Peer] = true
		}
		for _, s := range p.Recvs {
			peers[s.Peer] = true
		}
		want := map[int]bool{(me + 1) % n: true, (me + n - 1) % n: true}
		if len(peers) != len(want) || !peers[(me+1)%n] || !peers[(me+n-1)%n] {
			t.Errorf("rank %d talks to %v, want its ring neighbours %v", me, peers, want)
		}
		if len(p.Sends) != 2 || len(p.Recvs) != 2 {
			t.Errorf("rank %d: %d sends, %d receives, want 2 and 2", me, len(p.Sends), len(p.Recvs))
		}
	}
}

// countingTransport counts the writes a rank makes: one per Send, one per
// SendMulti batch.
type countingTransport struct {
	transport.Transport
	writes atomic.Int64
}

func (c *countingTransport) Send(ctx context.Context, peer int, tag transport.Tag, b []byte) error {
	c.writes.Add(1)
	return c.Transport.Send(ctx, peer, tag, b)
}

func (c *countingTransport) SendMulti(ctx context.Context, peer int, tag transport.Tag, bufs [][]byte) error {
	c.writes.Add(1)
	for _, b := range bufs {
		if err := c.Transport.Send(ctx, peer, tag, b); err != nil {
			return err
		}
	}
	return nil
}

// A small all-reduce at 4 ranks costs each rank 2 writes: each ring
// neighbour (its recursive-doubling partner) gets the fingerprint in the
// same write as the data.
func TestSmallAllReduceAtFourRanksWritesTwicePerRank(t *testing.T) {
	ts := loopbackWorld(t, 4)
	cts := make([]*countingTransport, len(ts))
	for i, tr := range ts {
		cts[i] = &countingTransport{Transport: tr}
		ts[i] = cts[i]
	}
	const calls = 5
	onAll(t, ts, Options{}, func(r int, c *Comm) error {
		for k := 0; k < calls; k++ {
			buf := make(F32, 1024)
			for i := range buf {
				buf[i] = float32(r + i)
			}
			if err := c.AllReduce(context.Background(), buf, Sum); err != nil {
				return err
			}
			for i, v := range buf {
				if want := float32(6 + 4*i); v != want {
					return fmt.Errorf("rank %d element %d = %v, want %v", r, i, v, want)
				}
			}
		}
		return nil
	})
	for r, ct := range cts {
		if got := ct.writes.Load(); got != 2*calls {
			t.Errorf("rank %d made %d writes in %d calls, want %d", r, got, calls, 2*calls)
		}
	}
}
