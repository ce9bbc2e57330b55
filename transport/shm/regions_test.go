package shm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
)

// ShareRegions: every member maps every other's region (a write by one is
// read by all), the regions start zeroed, and Gone tells a member that
// closed (goodbye) from one that aborted.
func TestShareRegions(t *testing.T) {
	const n, size = 3, 1 << 16
	ts := world(t, n, 256<<10)
	group := []int{0, 1, 2}
	rs := make([]*transport.Regions, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rs[r], errs[r] = ts[r].ShareRegions(ctx, 77, group, size)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r := range n {
		if len(rs[r].Mem) != n {
			t.Fatalf("rank %d sees %d regions", r, len(rs[r].Mem))
		}
		for i, m := range rs[r].Mem {
			if len(m) != size || m[0] != 0 || m[size-1] != 0 {
				t.Fatalf("rank %d's view of region %d: %d bytes, not zeroed", r, i, len(m))
			}
		}
	}
	for r := range n {
		rs[r].Mem[r][100] = byte(10 + r) // each writes its own
	}
	for r := range n {
		for i := range n {
			if got := rs[r].Mem[i][100]; got != byte(10+i) {
				t.Errorf("rank %d reads %d in rank %d's region, want %d", r, got, i, 10+i)
			}
		}
		if err := rs[r].Gone(1); err != nil {
			t.Errorf("rank %d: rank 1 gone while alive: %v", r, err)
		}
	}
	ts[1].Close()
	ts[2].Abort()
	if err := rs[0].Gone(1); !errors.Is(err, transport.ErrPeerLeft) {
		t.Errorf("rank 1 closed: Gone = %v, want ErrPeerLeft", err)
	}
	var pe *transport.PeerError
	if err := rs[0].Gone(2); !errors.As(err, &pe) || pe.Peer != 2 || errors.Is(err, transport.ErrPeerLeft) {
		t.Errorf("rank 2 aborted: Gone = %v, want a PeerError naming it, not a goodbye", err)
	}
	for _, r := range rs {
		r.Release()
	}
}

// A member this transport does not reach is refused at once, without
// communicating (the other members decide the same on their own).
func TestShareRegionsNeedsEveryMemberConnected(t *testing.T) {
	ts := world(t, 2, 256<<10)
	_, err := ts[0].ShareRegions(context.Background(), 77, []int{0, 1, 5}, 4096)
	if !errors.Is(err, transport.ErrNoSharedMemory) {
		t.Fatalf("err = %v, want ErrNoSharedMemory", err)
	}
}
