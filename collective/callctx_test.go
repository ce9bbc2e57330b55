package collective

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Calls reuse their records and contexts (callCtx): these tests check
// that cancellation and deadlines still reach the right call, and only it.

func TestCancellingTheCallersContextStopsTheCall(t *testing.T) {
	ts := loopbackWorld(t, 2)
	c, err := New(ts[0], []int{0, 1}, Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Rank 1 never joins; the caller's context (no deadline) is cancelled.
	ctx, cancel := context.WithCancelCause(context.Background())
	why := errors.New("the training loop is stopping")
	time.AfterFunc(50*time.Millisecond, func() { cancel(why) })
	start := time.Now()
	err = c.AllReduce(ctx, make(F32, 8), Sum)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("cancelled call returned after %v", took)
	}
	if err == nil || !strings.Contains(err.Error(), "allreduce seq 0") || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want allreduce seq 0 ... context.Canceled", err)
	}
	// A call started under an already cancelled context fails at once.
	c2, _ := New(ts[0], []int{0, 1}, Options{Name: "second", Timeout: time.Minute})
	defer c2.Close()
	start = time.Now()
	if err := c2.AllReduce(ctx, make(F32, 8), Sum); !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("call under a cancelled context: %v after %v", err, time.Since(start))
	}
}

func TestReusedCallsKeepTheirOwnDeadlines(t *testing.T) {
	// Short default deadline; many quick calls, each with a different
	// cancellable parent, then a pause longer than the deadline, then more
	// calls: no earlier call's timer or parent may end a later one, and
	// watches of finished parents are dropped.
	ts := tcpWorld(t, 2)
	const timeout = 80 * time.Millisecond
	var cs [2]*Comm
	for r := range cs {
		c, err := New(ts[r], []int{0, 1}, Options{Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		cs[r] = c
		t.Cleanup(func() { c.Close() })
	}
	round := func(k int, pause time.Duration) {
		var wg sync.WaitGroup
		for r := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				parent, cancel := context.WithCancel(context.Background())
				defer cancel() // ends right after the call: its watch must not outlive it
				buf := F32{float32(r + 1)}
				if err := cs[r].AllReduce(parent, buf, Sum); err != nil {
					t.Errorf("round %d rank %d: %v", k, r, err)
				} else if buf[0] != 3 {
					t.Errorf("round %d rank %d: got %v, want 3", k, r, buf[0])
				}
			}()
		}
		wg.Wait()
		time.Sleep(pause)
	}
	for k := 0; k < 40; k++ {
		round(k, 0)
	}
	round(40, 2*timeout)
	round(41, 0)
	for r, c := range cs {
		c.mu.Lock()
		n := len(c.parents)
		c.mu.Unlock()
		if n > 1 {
			t.Errorf("rank %d still watches %d parent contexts, want at most 1", r, n)
		}
	}
}
