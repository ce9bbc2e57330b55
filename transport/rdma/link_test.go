package rdma

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
)

// waitFailure waits up to d for tr to announce a failure of peer and
// returns it.
func waitFailure(t *testing.T, tr *Transport, peer int, d time.Duration) *transport.PeerError {
	t.Helper()
	deadline := time.After(d)
	for {
		fs, next := tr.PeerFailures()
		for _, f := range fs {
			if f.Peer == peer {
				return f
			}
		}
		select {
		case <-next:
		case <-deadline:
			t.Fatalf("rank %d announced no failure of rank %d within %v", tr.Rank(), peer, d)
		}
	}
}

// TestCutIdleLinkIsNamed: two idle ranks (nothing sent, rank 0 waiting
// in a receive) whose link is cut: the heartbeats find it, and both ends
// fail the other with "link rank A <-> rank B lost" within about
// LinkTimeout; the waiting receive returns with that error.
func TestCutIdleLinkIsNamed(t *testing.T) {
	const timeout = 800 * time.Millisecond
	ts, provs := group(t, 2, func(_ int, c *Config) { c.LinkTimeout = timeout })
	recvErr := make(chan error, 1)
	go func() { recvErr <- ts[0].Recv(context.Background(), 1, 3, make([]byte, 16)) }()
	time.Sleep(2 * timeout) // idle, healthy: heartbeats only
	if fs, _ := ts[0].PeerFailures(); len(fs) != 0 {
		t.Fatalf("an idle healthy link failed: %v", fs[0])
	}
	cut := time.Now()
	provs[1].Cut(true)
	defer provs[1].Cut(false)
	for r, peer := range []int{1, 0} {
		f := waitFailure(t, ts[r], peer, 4*timeout)
		want := []string{"link rank 0 <-> rank 1 lost", "link rank 1 <-> rank 0 lost"}[r]
		if !strings.Contains(f.Error(), want) {
			t.Errorf("rank %d: failure %q, want %q", r, f, want)
		}
		t.Logf("rank %d: %v after the cut: %v", r, time.Since(cut).Round(10*time.Millisecond), f)
	}
	select {
	case err := <-recvErr:
		var pe *transport.PeerError
		if !errors.As(err, &pe) || pe.Peer != 1 || !strings.Contains(err.Error(), "link rank 0 <-> rank 1 lost") {
			t.Fatalf("waiting receive: %v, want the lost link to rank 1", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a receive from the cut peer still waits")
	}
}

// TestCutBusyLinkIsNamed: a cut in the middle of traffic (rank 1 sending
// to rank 0 in a loop) fails the pair at both ends as a lost link, with
// the sender's pending send returning that error.
func TestCutBusyLinkIsNamed(t *testing.T) {
	const timeout = 800 * time.Millisecond
	ts, provs := group(t, 2, func(_ int, c *Config) { c.LinkTimeout = timeout })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if err := ts[1].Send(ctx, 0, 5, buf); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	go func() {
		buf := make([]byte, 4096)
		for ts[0].Recv(ctx, 1, 5, buf) == nil {
		}
	}()
	time.Sleep(300 * time.Millisecond)
	provs[0].Cut(true)
	defer provs[0].Cut(false)
	f := waitFailure(t, ts[1], 0, 4*timeout)
	if !strings.Contains(f.Error(), "link rank 1 <-> rank 0 lost") {
		t.Errorf("rank 1: failure %q, want the lost link", f)
	}
	if f := waitFailure(t, ts[0], 1, 4*timeout); !strings.Contains(f.Error(), "link rank 0 <-> rank 1 lost") {
		t.Errorf("rank 0: failure %q, want the lost link", f)
	}
	select {
	case err := <-sendErr:
		if !strings.Contains(err.Error(), "link rank 1 <-> rank 0 lost") {
			t.Errorf("sender: %v, want the lost link", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the sender still sends over a cut link")
	}
}

// TestIdleLinksStayUpWithHeartbeats: ranks that exchange nothing for many
// link timeouts keep their links (heartbeats are acknowledged and keep
// the credit flowing), and traffic afterwards works.
func TestIdleLinksStayUpWithHeartbeats(t *testing.T) {
	const timeout = 400 * time.Millisecond
	ts, _ := group(t, 3, func(_ int, c *Config) { c.LinkTimeout = timeout })
	time.Sleep(8 * timeout) // 32 heartbeat periods with 8 receive slots
	for _, tr := range ts {
		if fs, _ := tr.PeerFailures(); len(fs) != 0 {
			t.Fatalf("rank %d: idle link failed: %v", tr.Rank(), fs[0])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, len(ts))
	for _, tr := range ts {
		go func() {
			data := make([]float32, 5000)
			for range 5 {
				if err := ringAllReduce(ctx, tr, data); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range ts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
