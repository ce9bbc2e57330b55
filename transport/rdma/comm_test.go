package rdma

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/transport"
)

// The collective package's own checks, ported to run its communicators
// over the RDMA transport with the soft provider: every collective, every
// dtype and reduction, latency and bandwidth algorithms, eager and
// rendezvous message sizes, and a dead rank named by every survivor.

func rdmaWorld(t *testing.T, n int) []transport.Transport {
	ts, _ := group(t, n, nil)
	out := make([]transport.Transport, n)
	for i, tr := range ts {
		out[i] = tr
	}
	return out
}

func commEach(ts []transport.Transport, opts collective.Options, f func(r int, c *collective.Comm) error) []error {
	ranks := make([]int, len(ts))
	for i := range ranks {
		ranks[i] = i
	}
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for r := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := collective.New(ts[r], ranks, opts)
			if err != nil {
				errs[r] = err
				return
			}
			defer c.Close()
			errs[r] = f(r, c)
		}()
	}
	wg.Wait()
	return errs
}

// cval is rank r's element i: small integers, exact in every dtype.
func cval(r, i int) float32 { return float32((r+1)%7 + i%5) }

func cref(op collective.Op, n, i int) float32 {
	acc := cval(0, i)
	for r := 1; r < n; r++ {
		v := cval(r, i)
		switch op {
		case collective.Sum, collective.Avg:
			acc += v
		case collective.Min:
			acc = min(acc, v)
		case collective.Max:
			acc = max(acc, v)
		}
	}
	if op == collective.Avg {
		acc /= float32(n)
	}
	return acc
}

func cvals(r, count int) []float32 {
	v := make([]float32, count)
	for i := range v {
		v[i] = cval(r, i)
	}
	return v
}

func ctyped(dt collective.DType, vals []float32) (collective.Buffer, func(i int) float32) {
	switch dt {
	case collective.BFloat16:
		b := make(collective.BF16, len(vals))
		for i, v := range vals {
			b[i] = collective.BF16FromFloat32(v)
		}
		return b, func(i int) float32 { return collective.Float32FromBF16(b[i]) }
	case collective.Float16:
		b := make(collective.F16, len(vals))
		for i, v := range vals {
			b[i] = collective.F16FromFloat32(v)
		}
		return b, func(i int) float32 { return collective.Float32FromF16(b[i]) }
	}
	b := collective.F32(append([]float32(nil), vals...))
	return b, func(i int) float32 { return b[i] }
}

func cround(dt collective.DType, f float32) float32 {
	switch dt {
	case collective.BFloat16:
		return collective.Float32FromBF16(collective.BF16FromFloat32(f))
	case collective.Float16:
		return collective.Float32FromF16(collective.F16FromFloat32(f))
	}
	return f
}

func commOps(ctx context.Context, c *collective.Comm, count int) error {
	r, n := c.Rank(), c.Size()
	for _, dt := range []collective.DType{collective.Float32, collective.BFloat16, collective.Float16} {
		for _, op := range []collective.Op{collective.Sum, collective.Avg, collective.Min, collective.Max} {
			buf, get := ctyped(dt, cvals(r, count))
			if err := c.AllReduce(ctx, buf, op); err != nil {
				return err
			}
			for i := range count {
				if want := cround(dt, cref(op, n, i)); get(i) != want {
					return fmt.Errorf("allreduce %v %v: element %d = %v, want %v", dt, op, i, get(i), want)
				}
			}
		}
		buf, get := ctyped(dt, cvals(r, count))
		if err := c.ReduceScatter(ctx, buf, collective.Sum); err != nil {
			return err
		}
		lo, hi := c.Chunk(count)
		for i := lo; i < hi; i++ {
			if want := cref(collective.Sum, n, i); get(i) != want {
				return fmt.Errorf("reducescatter %v: element %d = %v, want %v", dt, i, get(i), want)
			}
		}
		buf, get = ctyped(dt, cvals(r, count))
		if err := c.AllGather(ctx, buf); err != nil {
			return err
		}
		for owner := range n {
			lo, hi := collective.Chunk(count, n, owner)
			for i := lo; i < hi; i++ {
				if want := cval(owner, i); get(i) != want {
					return fmt.Errorf("allgather %v: element %d = %v, want rank %d's %v", dt, i, get(i), owner, want)
				}
			}
		}
	}
	for _, root := range []int{0, n - 1} {
		buf := collective.F32(cvals(r, count))
		if err := c.Broadcast(ctx, buf, root); err != nil {
			return err
		}
		for i := range buf {
			if buf[i] != cval(root, i) {
				return fmt.Errorf("broadcast root %d: element %d = %v", root, i, buf[i])
			}
		}
		buf = collective.F32(cvals(r, count))
		if err := c.Reduce(ctx, buf, collective.Max, root); err != nil {
			return err
		}
		if r == root {
			for i := range buf {
				if want := cref(collective.Max, n, i); buf[i] != want {
					return fmt.Errorf("reduce root %d: element %d = %v, want %v", root, i, buf[i], want)
				}
			}
		}
	}
	if err := c.Barrier(ctx); err != nil {
		return err
	}
	in, out := collective.F32(cvals(r, count*n)), make(collective.F32, count*n)
	if err := c.AllToAll(ctx, in, out); err != nil {
		return err
	}
	for from := range n {
		for j := range count {
			if want := cval(from, r*count+j); out[from*count+j] != want {
				return fmt.Errorf("alltoall: block from %d element %d = %v, want %v", from, j, out[from*count+j], want)
			}
		}
	}
	if n > 1 {
		send, recv := collective.F32(cvals(r, count)), make(collective.F32, count)
		h := c.SendAsync(ctx, send, (r+1)%n)
		if err := c.Recv(ctx, recv, (r+n-1)%n); err != nil {
			return err
		}
		if err := h.Wait(ctx); err != nil {
			return err
		}
		for i := range recv {
			if recv[i] != cval((r+n-1)%n, i) {
				return fmt.Errorf("recv element %d = %v", i, recv[i])
			}
		}
	}
	return nil
}

func TestCollectivePackageOverRDMA(t *testing.T) {
	variants := map[string]collective.Options{
		"latency":   {SmallBytes: 1 << 30},
		"bandwidth": {SmallBytes: 1, SegmentBytes: 4096},
	}
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
			ts := rdmaWorld(t, n)
			for name, opts := range variants {
				// 40000 float32 elements: 160 KB buffers, rendezvous-sized
				// messages (EagerLimit is 1 KiB in these tests).
				for _, count := range []int{0, 13, 1031, 40000} {
					opts.Name = fmt.Sprint(name, count)
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					errs := commEach(ts, opts, func(_ int, c *collective.Comm) error { return commOps(ctx, c, count) })
					cancel()
					for r, err := range errs {
						if err != nil {
							t.Errorf("%s count %d rank %d: %v", name, count, r, err)
						}
					}
					// Every call used fresh tags; none may linger.
					for r, tr := range ts {
						if n := liveTags(tr.(*Transport)); n != 0 {
							t.Errorf("%s count %d rank %d keeps %d tag queues", name, count, r, n)
						}
					}
				}
			}
		})
	}
}

// Rank 3 dies (its process is killed: the soft provider drops every
// connection) while the others are in an AllReduce: every survivor's
// communicator aborts well before its deadline and names rank 3.
func TestCollectiveDeadRankOverRDMA(t *testing.T) {
	for _, how := range []string{"close", "kill"} {
		t.Run(how, func(t *testing.T) {
			tss, provs := group(t, 4, nil)
			ts := make([]transport.Transport, 4)
			for i := range ts {
				ts[i] = tss[i]
			}
			const deadline = 5 * time.Second
			start := time.Now()
			errs := commEach(ts, collective.Options{Timeout: deadline, SmallBytes: 1, SegmentBytes: 4096}, func(r int, c *collective.Comm) error {
				buf := make(collective.F32, 1<<16)
				for k := 0; ; k++ {
					if r == 3 && k == 5 {
						if how == "kill" {
							provs[3].Kill()
						} else {
							ts[3].Close()
						}
						return nil
					}
					if err := c.AllReduce(context.Background(), buf, collective.Sum); err != nil {
						return err
					}
				}
			})
			if took := time.Since(start); took > deadline {
				t.Errorf("survivors took %v, deadline %v", took, deadline)
			}
			for r := range 3 {
				if errs[r] == nil || !strings.Contains(errs[r].Error(), "rank(s) [3] failed") {
					t.Errorf("rank %d: %v, want an error naming rank 3", r, errs[r])
				}
				var pe *transport.PeerError
				if !errors.As(errs[r], &pe) {
					t.Logf("rank %d: %v (no PeerError in chain)", r, errs[r])
				}
			}
		})
	}
}

// TestCollectiveSurvivorsThatGiveUpOverRDMA is collective's
// TestSurvivorsThatGiveUpAreNotBlamed over RDMA: a rank's provider is
// killed at varying points of large (rendezvous) all-reduces, and every
// survivor closes its transport as soon as its call fails, as an exiting
// process would. Each must name the killed rank and only it, not a
// neighbour whose queue pairs went down because it gave up first.
func TestCollectiveSurvivorsThatGiveUpOverRDMA(t *testing.T) {
	if testing.Short() {
		t.Skip("several worlds of 4 MiB all-reduces")
	}
	const n, victim = 4, 2
	for rep := 0; rep < 4; rep++ {
		t.Run(fmt.Sprint(rep), func(t *testing.T) {
			tss, provs := group(t, n, nil)
			ts := make([]transport.Transport, n)
			for i := range ts {
				ts[i] = tss[i]
			}
			started := make(chan struct{})
			go func() { // kill the victim a little into its third call
				<-started
				time.Sleep(time.Duration(rep) * 3 * time.Millisecond)
				provs[victim].Kill()
			}()
			errs := commEach(ts, collective.Options{Timeout: 10 * time.Second}, func(r int, c *collective.Comm) error {
				buf := make(collective.F32, 1<<20)
				for k := 0; ; k++ {
					if r == victim && k == 2 {
						close(started)
					}
					if err := c.AllReduce(context.Background(), buf, collective.Sum); err != nil {
						if r != victim {
							ts[r].Close() // exit on error, as a process does
						}
						return err
					}
				}
			})
			for r, err := range errs {
				if r == victim {
					continue
				}
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("rank(s) [%d] failed", victim)) || !strings.Contains(err.Error(), "allreduce seq") {
					t.Errorf("rank %d: %v, want an allreduce error naming rank %d only", r, err, victim)
				}
			}
		})
	}
}

// A rank that is alive but never calls: the others time out naming it,
// and the links stay usable for the next communicator.
func TestCollectiveTimeoutOverRDMA(t *testing.T) {
	ts := rdmaWorld(t, 3)
	const deadline = 300 * time.Millisecond
	start := time.Now()
	errs := commEach(ts, collective.Options{Name: "t1", Timeout: deadline, SmallBytes: 1, SegmentBytes: 4096}, func(r int, c *collective.Comm) error {
		if r == 1 {
			return nil
		}
		return c.AllReduce(context.Background(), make(collective.F32, 50000), collective.Sum)
	})
	if took := time.Since(start); took > deadline+2*time.Second {
		t.Errorf("took %v with a %v deadline", took, deadline)
	}
	for _, r := range []int{0, 2} {
		if errs[r] == nil || !strings.Contains(errs[r].Error(), "timed out") || !strings.Contains(errs[r].Error(), "1]") {
			t.Errorf("rank %d: %v, want a timeout naming rank 1", r, errs[r])
		}
	}
	for r, tr := range ts {
		if failed, _ := tr.(*Transport).PeerFailures(); len(failed) > 0 {
			t.Errorf("rank %d: a timeout failed links: %v", r, failed)
		}
	}
}

// Ranks disagreeing about a call are told so, naming each other.
func TestCollectiveMismatchOverRDMA(t *testing.T) {
	ts := rdmaWorld(t, 4)
	errs := commEach(ts, collective.Options{Timeout: time.Second}, func(r int, c *collective.Comm) error {
		ctx := context.Background()
		if err := c.AllReduce(ctx, make(collective.F32, 10), collective.Sum); err != nil {
			return err
		}
		if r == 2 {
			return c.AllReduce(ctx, make(collective.F32, 11), collective.Sum)
		}
		return c.AllReduce(ctx, make(collective.F32, 10), collective.Sum)
	})
	var me *collective.MismatchError
	if !errors.As(errs[2], &me) {
		t.Fatalf("rank 2: %v, want a MismatchError", errs[2])
	}
	for _, r := range []int{1, 3} {
		if !errors.As(errs[r], &me) || me.PeerRank != 2 {
			t.Errorf("rank %d: %v, want a MismatchError naming rank 2", r, errs[r])
		}
	}
}
