package shm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
)

// stressSizes mixes every size class: empty, small, the 64 KiB boundary
// and messages longer than a 256 KiB ring.
var stressSizes = []int{0, 12, 16, 100, 4096, 64 << 10, 64<<10 + 1, 300 << 10}

// stressMsg is message i of (from, to, tag): its length and contents
// depend only on those, so the receiver can check it.
func stressMsg(from, to, tag, i int) []byte {
	seed := ((from*8+to)*16+tag)*100000 + i
	n := stressSizes[seed*7919%len(stressSizes)]
	if n >= 64<<10 && i%5 != 0 {
		n = 12 // mostly small: long ones are few but always present
	}
	return pattern(seed, n)
}

// stressSink collects a chunked message.
type stressSink struct {
	mu  sync.Mutex
	buf []byte
}

func (s *stressSink) Chunk(off int, b []byte) {
	s.mu.Lock()
	copy(s.buf[off:], b)
	s.mu.Unlock()
}

// TestStressManyTagsEveryReceiveKind has every rank send to every other
// on several tags at once while receivers use every kind of receive
// (blocking, posted and waited for later, chunked), post late (messages
// park) or early, and sometimes pause, so that the ring fills and the
// drain path runs. Every message must arrive intact and in its tag's
// order; a receive that takes more than a few seconds fails the test with
// every transport's State.
func TestStressManyTagsEveryReceiveKind(t *testing.T) {
	for _, spin := range []time.Duration{-1, 0} {
		for _, n := range []int{2, 3, 4} {
			t.Run(fmt.Sprintf("spin%v/n%d", spin, n), func(t *testing.T) {
				stress(t, n, spin, 60)
			})
		}
	}
}

func stress(t *testing.T, n int, spin time.Duration, msgs int) {
	ts := worldSpin(t, n, 256<<10, spin)
	const tags = 4
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2*n*n*tags)
	progress := make([]int, n*n*tags) // messages received per (from, to, tag)
	var progMu sync.Mutex
	for from := range n {
		for to := range n {
			if from == to {
				continue
			}
			for tag := range tags {
				wg.Add(2)
				go func() { // sender
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(from*100 + to*10 + tag)))
					for i := 0; i < msgs; i++ {
						if rng.Intn(8) == 0 {
							time.Sleep(time.Duration(rng.Intn(300)) * time.Microsecond)
						}
						m := stressMsg(from, to, tag, i)
						var err error
						if rng.Intn(4) == 0 && i+1 < msgs {
							m2 := stressMsg(from, to, tag, i+1)
							err = ts[from].SendMulti(ctx, to, transport.Tag(tag), [][]byte{m, m2})
							i++
						} else {
							err = ts[from].Send(ctx, to, transport.Tag(tag), m)
						}
						if err != nil {
							errc <- fmt.Errorf("send %d->%d tag %d msg %d: %w", from, to, tag, i, err)
							return
						}
					}
				}()
				go func() { // receiver
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(7 + from*100 + to*10 + tag)))
					type pending struct {
						i    int
						want []byte
						buf  []byte
						sink *stressSink
						pr   transport.PostedRecv
					}
					var window []pending
					defer func() { // every posted receive is waited for, even after a failure
						for _, q := range window {
							_ = q.pr.Wait()
						}
					}()
					check := func(p pending) error {
						err := p.pr.Wait()
						if err != nil {
							return fmt.Errorf("recv %d->%d tag %d msg %d: %w", from, to, tag, p.i, err)
						}
						got := p.buf
						if p.sink != nil {
							got = p.sink.buf
						}
						if !bytes.Equal(got, p.want) {
							return fmt.Errorf("recv %d->%d tag %d msg %d: wrong bytes", from, to, tag, p.i)
						}
						progMu.Lock()
						progress[(from*n+to)*tags+tag]++
						progMu.Unlock()
						return nil
					}
					// drain checks the receives in flight, oldest first; it
					// reports false (and sends the error) at the first bad one.
					drain := func() bool {
						for len(window) > 0 {
							q := window[0]
							window = window[1:]
							if err := check(q); err != nil {
								errc <- err
								return false
							}
						}
						return true
					}
					for i := range msgs {
						if rng.Intn(8) == 0 {
							time.Sleep(time.Duration(rng.Intn(500)) * time.Microsecond)
						}
						want := stressMsg(from, to, tag, i)
						p := pending{i: i, want: want}
						switch rng.Intn(3) {
						case 0:
							p.buf = make([]byte, len(want))
							p.pr = ts[to].PostRecv(ctx, from, transport.Tag(tag), p.buf)
						case 1:
							p.sink = &stressSink{buf: make([]byte, len(want))}
							p.pr = ts[to].PostRecvChunks(ctx, from, transport.Tag(tag), len(want), p.sink)
						default:
							if !drain() {
								return
							}
							p.buf = make([]byte, len(want))
							err := ts[to].Recv(ctx, from, transport.Tag(tag), p.buf)
							p.pr = transport.FailedRecv(err)
						}
						window = append(window, p)
						if len(window) > rng.Intn(6) {
							if !drain() {
								return
							}
						}
					}
					drain()
				}()
			}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		var b strings.Builder
		for _, tr := range ts {
			b.WriteString(tr.State())
			b.WriteString("\n")
		}
		progMu.Lock()
		fmt.Fprintf(&b, "progress (from, to, tag) -> received: ")
		for k, v := range progress {
			if v < msgs && k/tags/n != k/tags%n {
				fmt.Fprintf(&b, " (%d,%d,%d)=%d", k/tags/n, k/tags%n, k%tags, v)
			}
		}
		progMu.Unlock()
		t.Errorf("stuck after 20s:\n%s", b.String())
		cancel()
		<-done
	}
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// A long message whose receiver drains slowly (here: its pump is held
// for longer than finishGrace) must still arrive while the send's
// context lives: the grace only bounds how long a send keeps writing
// after its context has ended. (It used to count from the message's
// header, so a 64 MiB message through a small ring to a busy receiver
// declared the pair crashed after one second.)
func TestLongSendOutlivesGraceWhileContextLives(t *testing.T) {
	ts := world(t, 2, 256<<10)
	msg := pattern(5, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pl := ts[1].peers[0].pumpLock
	pl <- struct{}{} // rank 1 cannot move anything out of its ring from rank 0
	errc := make(chan error, 1)
	go func() { errc <- ts[0].Send(ctx, 1, 7, msg) }()
	time.Sleep(finishGrace + 500*time.Millisecond)
	<-pl
	got := make([]byte, len(msg))
	if err := ts[1].Recv(ctx, 0, 7, got); err != nil {
		t.Fatalf("recv: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("send: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("message corrupted")
	}
}

// A long send whose context ends while its receiver cannot drain gives
// up (finishGrace after the context's end) with the context's error, and
// the pair is failed: the receiver must not wait for the rest.
func TestLongSendGivesUpAfterItsContextEnds(t *testing.T) {
	ts := world(t, 2, 256<<10)
	pl := ts[1].peers[0].pumpLock
	pl <- struct{}{}
	// Long enough that the message's header is surely out before it ends
	// (it is written at once: the ring is empty).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := ts[0].Send(ctx, 1, 7, make([]byte, 1<<20))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send: %v, want the context's deadline", err)
	}
	<-pl
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()
	err = ts[1].Recv(rctx, 0, 7, make([]byte, 1<<20))
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Peer != 0 || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("recv of the half-sent message: %v, want rank 0's failure", err)
	}
}

// A receive's polling budget: full after a poll that found its message,
// an eighth of the ceiling less after each that did not, never below
// minSpin.
func TestPollingBudgetAdapts(t *testing.T) {
	ts := world(t, 2, 256<<10)
	pe := ts[0].peers[1]
	ceil := ts[0].cfg.Spin
	if got := time.Duration(pe.spinFor.Load()); got != ceil {
		t.Fatalf("initial budget %v, want Config.Spin %v", got, ceil)
	}
	for i := 1; i <= 10; i++ {
		pe.spun(false)
		want := max(ceil-time.Duration(i)*(ceil/8), minSpin)
		if got := time.Duration(pe.spinFor.Load()); got != want {
			t.Fatalf("after %d fruitless polls: budget %v, want %v", i, got, want)
		}
	}
	pe.spun(true)
	if got := time.Duration(pe.spinFor.Load()); got != ceil {
		t.Fatalf("after a poll that found its message: budget %v, want %v", got, ceil)
	}
	// A message that arrives while the receive waits still arrives
	// (polling or parked), whatever the budget.
	pe.spinFor.Store(int64(minSpin))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = ts[1].Send(ctx, 0, 3, []byte("late"))
	}()
	got := make([]byte, 4)
	if err := ts[0].Recv(ctx, 1, 3, got); err != nil || string(got) != "late" {
		t.Fatalf("recv: %q, %v", got, err)
	}
}

// Every receive parks at once (no polling), and each round the sender
// publishes at the moment its receiver parks (both leave a spin barrier
// together), so every message must wake its receiver through the
// handshake between the writer (publish the head, then read the parked
// count) and the waiter (count itself parked, then read the head). A lost
// wake-up leaves a receive waiting with its message in the ring until its
// deadline. (The race detector's atomic stores are release stores, which
// x86 may order after a later load: with a plain store of the head the
// handshake lost wake-ups under -race.)
func TestParkedReceiverIsAlwaysWoken(t *testing.T) {
	ts := worldSpin(t, 2, 256<<10, -1)
	const rounds = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var arrived [2]atomic.Int64 // rounds each side has reached
	errc := make(chan error, 2)
	for r := range 2 {
		go func() {
			buf := make([]byte, 8)
			for i := range rounds {
				arrived[r].Store(int64(i + 1))
				for arrived[1-r].Load() < int64(i+1) {
					if ctx.Err() != nil {
						errc <- ctx.Err()
						return
					}
				}
				if r == 0 {
					if err := ts[0].Send(ctx, 1, 1, buf); err != nil {
						errc <- fmt.Errorf("send %d: %w", i, err)
						return
					}
					continue
				}
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				err := ts[1].Recv(rctx, 0, 1, buf)
				rcancel()
				if err != nil {
					errc <- fmt.Errorf("recv %d (a lost wake-up if the message was sent): %w\n%s", i, err, ts[1].State())
					return
				}
			}
			errc <- nil
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}
