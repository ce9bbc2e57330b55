package rdma

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/rdma/softverbs"
	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// allReduceLoop runs ring AllReduce rounds until one fails or ctx ends.
func allReduceLoop(ctx context.Context, tr transport.Transport, count int) error {
	data := make([]float32, count)
	for ctx.Err() == nil {
		if err := ringAllReduce(ctx, tr, data); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// checkAllFail asserts every rank's error is a PeerError naming a peer
// and an operation, and that all returned within the deadline.
func checkAllFail(t *testing.T, errs []error, elapsed, deadline time.Duration) {
	t.Helper()
	if elapsed > deadline+2*time.Second {
		t.Errorf("ranks returned after %v, deadline %v", elapsed, deadline)
	}
	for r, err := range errs {
		var pe *transport.PeerError
		if !errors.As(err, &pe) {
			t.Errorf("rank %d: err = %v, want a PeerError", r, err)
			continue
		}
		if pe.Op != "send" && pe.Op != "recv" {
			t.Errorf("rank %d: op %q, want send or recv", r, pe.Op)
		}
		if !strings.Contains(err.Error(), "rank ") {
			t.Errorf("rank %d: error %q does not name the peer", r, err)
		}
		t.Logf("rank %d: %v", r, err)
	}
}

// A QP entering the error state mid-collective: the ranks at both ends of
// it fail at once with the verbs status; the third learns within the
// deadline. Nothing hangs.
func TestFaultQPError(t *testing.T) {
	var fired atomic.Bool
	faulty := softverbs.New(softverbs.Options{Faults: softverbs.Faults{FailQP: func(_ uint32, n uint64) bool {
		return n == 20 && fired.CompareAndSwap(false, true)
	}}})
	ts, _ := group(t, 3, func(r int, c *Config) {
		if r == 1 {
			c.Provider = faulty
		}
	})
	const deadline = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	errs := onAll(ts, func(_ int, tr *Transport) error { return allReduceLoop(ctx, tr, 5000) })
	checkAllFail(t, errs, time.Since(start), deadline)
	if !fired.Load() {
		t.Fatal("fault never fired")
	}
	// Rank 1 owns the failed QP: its error carries the verbs status.
	var wce *verbs.WCError
	if !errors.As(errs[1], &wce) {
		t.Errorf("rank 1: %v does not wrap a verbs completion error", errs[1])
	}
	failed, _ := ts[1].PeerFailures()
	if len(failed) != 1 {
		t.Errorf("rank 1 reports %d failed peers, want 1", len(failed))
	}
}

// A killed process: its peers' QPs error as soon as the connections drop.
// The rank waiting on the dead one fails at once naming it; every survivor
// learns of the death through PeerFailures (what a collective watches to
// abort early) and, at the latest, fails at its deadline.
func TestFaultKilledPeer(t *testing.T) {
	ts, provs := group(t, 3, nil)
	const deadline = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	killed := make(chan time.Time, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		killed <- time.Now()
		provs[2].Kill()
	}()
	noticed := make([]chan time.Duration, 2)
	for r := range 2 {
		noticed[r] = make(chan time.Duration, 1)
		go func() {
			for {
				failed, next := ts[r].PeerFailures()
				for _, f := range failed {
					if f.Peer == 2 {
						noticed[r] <- time.Since(start0(killed))
						return
					}
				}
				select {
				case <-next:
				case <-ctx.Done():
					noticed[r] <- -1
					return
				}
			}
		}()
	}
	start := time.Now()
	errs := onAll(ts[:2], func(_ int, tr *Transport) error { return allReduceLoop(ctx, tr, 3000) })
	checkAllFail(t, errs, time.Since(start), deadline)
	for r := range 2 {
		d := <-noticed[r]
		if d < 0 || d > time.Second {
			t.Errorf("rank %d noticed the death of rank 2 after %v", r, d)
		}
	}
	var pe *transport.PeerError
	if errors.As(errs[0], &pe) && pe.Peer != 2 {
		t.Errorf("rank 0 (receiving from rank 2) failed on rank %d, want 2", pe.Peer)
	}
}

// start0 returns the kill time, leaving it for the other watcher.
func start0(c chan time.Time) time.Time {
	t := <-c
	c <- t
	return t
}

// A dropped completion (the receive of an RDMA write): the Recv waiting
// for it returns at its deadline with an error naming peer and op.
func TestFaultDroppedCompletion(t *testing.T) {
	drop := softverbs.New(softverbs.Options{Faults: softverbs.Faults{DropCompletion: func(wc verbs.WorkCompletion) bool {
		return wc.Opcode == verbs.WCRecvRDMAWithImm
	}}})
	ts, _ := group(t, 2, func(r int, c *Config) {
		if r == 1 {
			c.Provider = drop
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	go ts[0].Send(ctx, 1, 0, pattern(10000, 0))
	start := time.Now()
	err := ts[1].Recv(ctx, 0, 0, make([]byte, 10000))
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Peer != 0 || pe.Op != "recv" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want recv PeerError for rank 0 at the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v", d)
	}
}

// A slow peer delays but does not break the collective.
func TestFaultSlowPeerStillCorrect(t *testing.T) {
	ts, _ := group(t, 3, func(r int, c *Config) {
		if r == 0 {
			c.Provider = softverbs.New(softverbs.Options{Faults: softverbs.Faults{SendDelay: time.Millisecond}})
		}
	})
	ctx := ctxT(t, 20*time.Second)
	errs := onAll(ts, func(r int, tr *Transport) error {
		data := make([]float32, 20000)
		for i := range data {
			data[i] = float32(r + i%10)
		}
		if err := ringAllReduce(ctx, tr, data); err != nil {
			return err
		}
		for i, v := range data {
			if v != float32(3+3*(i%10)) {
				return errors.New("wrong sum")
			}
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// A Recv cancelled while the peer's RDMA write is on its way waits for the
// write (up to AbandonGrace) rather than failing the connection: after a
// collective aborts, healthy links stay healthy.
func TestCancelledRendezvousKeepsConnection(t *testing.T) {
	ts, _ := group(t, 2, func(r int, c *Config) {
		if r == 0 {
			c.Provider = softverbs.New(softverbs.Options{Faults: softverbs.Faults{SendDelay: 100 * time.Millisecond}})
		}
	})
	ctx := ctxT(t, 10*time.Second)
	sent := make(chan error, 1)
	go func() { sent <- ts[0].Send(ctx, 1, 1, pattern(20000, 1)) }()
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	if err := ts[1].Recv(short, 0, 1, make([]byte, 20000)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv: %v, want deadline exceeded", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	go ts[0].Send(ctx, 1, 2, pattern(30000, 2))
	buf := make([]byte, 30000)
	if err := ts[1].Recv(ctx, 0, 2, buf); err != nil || !bytes.Equal(buf, pattern(30000, 2)) {
		t.Fatalf("exchange after the cancelled receive: %v", err)
	}
	for r, tr := range ts {
		if failed, _ := tr.PeerFailures(); len(failed) > 0 {
			t.Errorf("rank %d reports failures %v", r, failed)
		}
	}
}
