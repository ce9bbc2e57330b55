package collective

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestEveryKindOfMismatchIsNamed: rank 2 of 4 makes a call at sequence
// number 1 that differs from the other ranks' in one respect (the
// operation, the element type, the reduction, the root, the group, or it
// skipped the call everyone else made). Rank 2 fails with a MismatchError
// quoting its own call and a neighbour's, and its ring neighbours (1 and
// 3) fail naming rank 2: the fingerprints found it, not the deadline
// (which would be a timeout error). Rank 0, not a neighbour of rank 2,
// learns nothing from the fingerprints: it times out waiting for a
// neighbour (or, as a broadcast's root, finishes): the job's abort (the
// worker runtime reports the first failure to the coordinator) ends it
// sooner in a real run. The count
// mismatch is TestMismatchedCallNamesBothRanksAndCalls.
func TestEveryKindOfMismatchIsNamed(t *testing.T) {
	ctx := context.Background()
	same := func(c *Comm) error { return c.AllReduce(ctx, make(F32, 10), Sum) }
	cases := []struct {
		name string
		// odd is rank 2's call at seq 1, others' the others' (default same)
		odd, others func(c *Comm) error
		// mine and theirs are in rank 2's error: its call and a neighbour's
		mine, theirs string
		// after seq 1 the others make this call too (the skip case)
		then      func(c *Comm) error
		sameGroup bool
	}{
		{name: "op", odd: func(c *Comm) error { return c.Broadcast(ctx, make(F32, 10), 0) },
			mine: "rank 2 called broadcast(count=10, f32, root=0) seq 1", theirs: "allreduce(count=10, f32, sum) seq 1", sameGroup: true},
		{name: "dtype", odd: func(c *Comm) error { return c.AllReduce(ctx, make(BF16, 10), Sum) },
			mine: "rank 2 called allreduce(count=10, bf16, sum) seq 1", theirs: "allreduce(count=10, f32, sum) seq 1", sameGroup: true},
		{name: "reduction", odd: func(c *Comm) error { return c.AllReduce(ctx, make(F32, 10), Max) },
			mine: "rank 2 called allreduce(count=10, f32, max) seq 1", theirs: "allreduce(count=10, f32, sum) seq 1", sameGroup: true},
		{name: "root", odd: func(c *Comm) error { return c.Broadcast(ctx, make(F32, 10), 1) },
			others: func(c *Comm) error { return c.Broadcast(ctx, make(F32, 10), 0) },
			mine:   "rank 2 called broadcast(count=10, f32, root=1) seq 1", theirs: "broadcast(count=10, f32, root=0) seq 1", sameGroup: true},
		{name: "reduce-root", odd: func(c *Comm) error { return c.Reduce(ctx, make(F32, 10), Sum, 3) },
			others: func(c *Comm) error { return c.Reduce(ctx, make(F32, 10), Sum, 0) },
			mine:   "rank 2 called reduce(count=10, f32, sum, root=3) seq 1", theirs: "reduce(count=10, f32, sum, root=0) seq 1", sameGroup: true},
		{name: "skipped", odd: func(c *Comm) error { return c.AllGather(ctx, make(F32, 12)) }, // rank 2's next call is the others' seq 2
			then: func(c *Comm) error { return c.AllGather(ctx, make(F32, 12)) },
			mine: "rank 2 called allgather(count=12, f32) seq 1", theirs: "allreduce(count=10, f32, sum) seq 1", sameGroup: true},
	}
	for _, w := range []struct {
		name string
		mk   world
	}{{"loopback", loopbackWorld}, {"tcp", tcpWorld}, {"shm", shmWorld}} {
		for _, tc := range cases {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				ts := w.mk(t, 4)
				const deadline = time.Second
				errs := runEach(ts, Options{Timeout: deadline}, func(r int, c *Comm) error {
					if err := same(c); err != nil { // seq 0 agrees
						return err
					}
					if r == 2 {
						return tc.odd(c)
					}
					others := same
					if tc.others != nil {
						others = tc.others
					}
					if err := others(c); err != nil {
						return err
					}
					if tc.then != nil {
						return tc.then(c)
					}
					return nil
				})
				checkMismatch(t, errs, tc.mine, tc.theirs, tc.sameGroup)
			})
		}
	}
}

// checkMismatch: rank 2's error is a MismatchError quoting both calls
// and naming a ring neighbour; ranks 1 and 3 name rank 2.
func checkMismatch(t *testing.T, errs []error, mine, theirs string, sameGroup bool) {
	t.Helper()
	var me *MismatchError
	if !errors.As(errs[2], &me) {
		t.Fatalf("rank 2: %v, want a MismatchError", errs[2])
	}
	for _, want := range []string{mine, theirs} {
		if !strings.Contains(errs[2].Error(), want) {
			t.Errorf("rank 2 error %q lacks %q", errs[2], want)
		}
	}
	if me.SameGroup != sameGroup {
		t.Errorf("rank 2 error says same group %v, want %v", me.SameGroup, sameGroup)
	}
	if me.PeerRank != 1 && me.PeerRank != 3 {
		t.Errorf("rank 2 names rank %d, not a neighbour", me.PeerRank)
	}
	for _, r := range []int{1, 3} {
		if !errors.As(errs[r], &me) || me.PeerRank != 2 {
			t.Errorf("rank %d: %v, want a MismatchError naming rank 2", r, errs[r])
		}
	}
}

// TestMismatchedGroupTimesOutNamingTheRank: rank 2 calls on a
// communicator over the same ranks under another name (another group, as
// when ranks build their groups in different orders). Communicators use
// disjoint tags, so the fingerprints of the two groups never meet: the
// mismatch is found by the deadline, rank 2's neighbours naming rank 2 in
// the group it never called, and rank 2 naming the call it made on the
// other group (seq 0 of "tp"), so the two calls show side by side.
func TestMismatchedGroupTimesOutNamingTheRank(t *testing.T) {
	for _, w := range []struct {
		name string
		mk   world
	}{{"loopback", loopbackWorld}, {"tcp", tcpWorld}, {"shm", shmWorld}} {
		t.Run(w.name, func(t *testing.T) {
			ts := w.mk(t, 4)
			const deadline = time.Second
			errs := runEach(ts, Options{Timeout: deadline, Name: "dp"}, func(r int, c *Comm) error {
				ctx := context.Background()
				if err := c.AllReduce(ctx, make(F32, 10), Sum); err != nil {
					return err
				}
				if r != 2 {
					return c.AllReduce(ctx, make(F32, 10), Sum)
				}
				other, err := New(ts[2], []int{0, 1, 2, 3}, Options{Timeout: deadline, Name: "tp"})
				if err != nil {
					return err
				}
				defer other.Close()
				return other.AllReduce(ctx, make(F32, 10), Sum)
			})
			for r, err := range errs {
				t.Logf("rank %d: %v", r, err)
			}
			if errs[2] == nil || !strings.Contains(errs[2].Error(), "allreduce seq 0: timed out") {
				t.Errorf("rank 2: %v, want a timeout of its allreduce seq 0 on the other group", errs[2])
			}
			for _, r := range []int{1, 3} {
				if errs[r] == nil || !strings.Contains(errs[r].Error(), "allreduce seq 1: timed out") || !strings.Contains(errs[r].Error(), "[2]") {
					t.Errorf("rank %d: %v, want a timeout of allreduce seq 1 naming rank 2", r, errs[r])
				}
			}
		})
	}
}

// TestRankThatSkipsTheLastCallIsNamed: rank 2 skips the last call and
// stays alive (no fingerprint ever comes): its ring neighbours fail by
// the deadline naming rank 2. Rank 0 waits on a neighbour that itself
// waits on rank 2, so it names that neighbour (the flight recorder's
// dump, which shows who waits on whom, resolves such chains).
func TestRankThatSkipsTheLastCallIsNamed(t *testing.T) {
	ts := tcpWorld(t, 4)
	const deadline = time.Second
	errs := runEach(ts, Options{Timeout: deadline}, func(r int, c *Comm) error {
		ctx := context.Background()
		if err := c.AllReduce(ctx, make(F32, 10), Sum); err != nil {
			return err
		}
		if r == 2 {
			time.Sleep(2 * deadline) // alive, not calling
			return nil
		}
		return c.AllReduce(ctx, make(F32, 10), Sum)
	})
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "allreduce seq 1: timed out") {
		t.Errorf("rank 0: %v, want a timeout of allreduce seq 1", errs[0])
	}
	for _, r := range []int{1, 3} {
		if errs[r] == nil || !strings.Contains(errs[r].Error(), "allreduce seq 1: timed out") || !strings.Contains(errs[r].Error(), "[2]") {
			t.Errorf("rank %d: %v, want a timeout of allreduce seq 1 naming rank 2", r, errs[r])
		}
	}
}
