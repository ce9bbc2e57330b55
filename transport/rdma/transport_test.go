package rdma

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/rdma/softverbs"
	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// group dials n ranks over soft providers (one per rank, as separate
// processes would have), configured by opts (which may be nil).
func group(t *testing.T, n int, opts func(rank int, c *Config)) ([]*Transport, []*softverbs.Provider) {
	t.Helper()
	store := rendezvous.NewMem()
	ts := make([]*Transport, n)
	provs := make([]*softverbs.Provider, n)
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for r := range n {
		provs[r] = softverbs.New(softverbs.Options{})
		cfg := Config{Rank: r, Size: n, Store: store, Provider: provs[r], EagerLimit: 1024, RecvSlots: 8, SendSlots: 4}
		if opts != nil {
			opts(r, &cfg)
		}
		if p, ok := cfg.Provider.(*softverbs.Provider); ok {
			provs[r] = p
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts[r], errs[r] = Dial(ctx, cfg)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: dial: %v", r, err)
		}
	}
	t.Cleanup(func() {
		for _, tr := range ts {
			tr.Close()
		}
	})
	return ts, provs
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed*13 + i>>8)
	}
	return b
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestSendRecvSizes(t *testing.T) {
	ts, _ := group(t, 2, nil)
	ctx := ctxT(t, 20*time.Second)
	// Around the eager limit (1024) and well into the rendezvous path.
	sizes := []int{0, 1, 100, 1023, 1024, 1025, 4096, 1 << 20}
	errc := make(chan error, 1)
	go func() {
		for i, n := range sizes {
			if err := ts[0].Send(ctx, 1, 7, pattern(n, i)); err != nil {
				errc <- fmt.Errorf("send %d bytes: %w", n, err)
				return
			}
		}
		errc <- nil
	}()
	for i, n := range sizes {
		buf := make([]byte, n)
		if err := ts[1].Recv(ctx, 0, 7, buf); err != nil {
			t.Fatalf("recv %d bytes: %v", n, err)
		}
		if !bytes.Equal(buf, pattern(n, i)) {
			t.Fatalf("recv %d bytes: payload differs", n)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Many more messages than receive slots, in both directions at once and
// with the receiver posting late: credits must flow back (piggybacked and
// credit-only) without deadlock and without a receiver-not-ready error.
func TestCreditsManyMessagesBothWays(t *testing.T) {
	ts, _ := group(t, 2, nil)
	ctx := ctxT(t, 30*time.Second)
	const msgs = 500
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 2 {
		wg.Add(2)
		go func() { // sender
			defer wg.Done()
			for i := range msgs {
				n := 16 + i%3*700 // eager sizes, some rendezvous-free mixes
				if i%50 == 0 {
					n = 3000 // an occasional rendezvous
				}
				if err := ts[r].Send(ctx, 1-r, 1, pattern(n, i+r)); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // receiver, starting late
			defer wg.Done()
			time.Sleep(50 * time.Millisecond)
			for i := range msgs {
				n := 16 + i%3*700
				if i%50 == 0 {
					n = 3000
				}
				buf := make([]byte, n)
				if err := ts[r].Recv(ctx, 1-r, 1, buf); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, pattern(n, i+1-r)) {
					errs <- fmt.Errorf("rank %d message %d differs", r, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestTagsAreIndependent(t *testing.T) {
	ts, _ := group(t, 2, nil)
	ctx := ctxT(t, 10*time.Second)
	// Tag 1 is sent first but received last; both paths (eager, rendezvous).
	for _, n := range []int{10, 5000} {
		go func() {
			ts[0].Send(ctx, 1, 1, pattern(n, 1))
			ts[0].Send(ctx, 1, 2, pattern(n, 2))
		}()
		b2, b1 := make([]byte, n), make([]byte, n)
		if err := ts[1].Recv(ctx, 0, 2, b2); err != nil {
			t.Fatal(err)
		}
		if err := ts[1].Recv(ctx, 0, 1, b1); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, pattern(n, 1)) || !bytes.Equal(b2, pattern(n, 2)) {
			t.Fatalf("%d bytes: tags mixed up", n)
		}
	}
}

// A message of the wrong size is consumed and reported as a SizeError;
// the next message on the stream is intact.
func TestSizeMismatchKeepsStreamInSync(t *testing.T) {
	ts, _ := group(t, 2, nil)
	ctx := ctxT(t, 10*time.Second)
	cases := []struct{ send, recv int }{{10, 20}, {20, 10}, {5000, 6000}, {6000, 5000}, {10, 5000}, {5000, 10}}
	for _, c := range cases {
		sent := make(chan error, 1)
		go func() {
			if err := ts[0].Send(ctx, 1, 3, pattern(c.send, 0)); err != nil {
				sent <- err
				return
			}
			sent <- ts[0].Send(ctx, 1, 3, pattern(100, 9))
		}()
		err := ts[1].Recv(ctx, 0, 3, make([]byte, c.recv))
		var se *transport.SizeError
		if !errors.As(err, &se) || se.Want != c.recv || se.Got != c.send || se.Peer != 0 {
			t.Fatalf("send %d recv %d: err = %v, want SizeError", c.send, c.recv, err)
		}
		buf := make([]byte, 100)
		if err := ts[1].Recv(ctx, 0, 3, buf); err != nil || !bytes.Equal(buf, pattern(100, 9)) {
			t.Fatalf("send %d recv %d: next message: %v", c.send, c.recv, err)
		}
		if err := <-sent; err != nil {
			t.Fatalf("send %d recv %d: sender: %v", c.send, c.recv, err)
		}
	}
}

func TestRegistrationCacheReusesBuffers(t *testing.T) {
	ts, _ := group(t, 2, nil)
	ctx := ctxT(t, 10*time.Second)
	src, dst := pattern(64<<10, 3), make([]byte, 64<<10)
	for i := range 5 {
		done := make(chan error, 1)
		go func() { done <- ts[0].Send(ctx, 1, 0, src) }()
		if err := ts[1].Recv(ctx, 0, 0, dst); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(src, dst) {
			t.Fatalf("round %d: payload differs", i)
		}
	}
	for r, tr := range ts {
		hits, misses, _ := tr.RegCacheStats()
		if misses != 1 || hits != 4 {
			t.Errorf("rank %d: %d hits, %d misses; want 4 and 1 (register once, reuse)", r, hits, misses)
		}
	}
}

func TestRegistrationCacheEvictsIdleEntries(t *testing.T) {
	ts, _ := group(t, 2, func(_ int, c *Config) { c.RegCacheBytes = 100 << 10 })
	ctx := ctxT(t, 10*time.Second)
	for i := range 4 {
		src, dst := pattern(64<<10, i), make([]byte, 64<<10)
		done := make(chan error, 1)
		go func() { done <- ts[0].Send(ctx, 1, 0, src) }()
		if err := ts[1].Recv(ctx, 0, 0, dst); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for r, tr := range ts {
		if _, _, b := tr.RegCacheStats(); b > 100<<10 {
			t.Errorf("rank %d keeps %d bytes registered, limit %d", r, b, 100<<10)
		}
	}
}

func TestRecvDeadlineNamesPeer(t *testing.T) {
	ts, _ := group(t, 2, nil)
	for _, n := range []int{8, 8000} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		err := ts[1].Recv(ctx, 0, 5, make([]byte, n))
		cancel()
		var pe *transport.PeerError
		if !errors.As(err, &pe) || pe.Peer != 0 || pe.Op != "recv" || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want recv PeerError for rank 0 wrapping deadline", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Recv returned after %v", d)
		}
	}
	// A receive cancelled before anything arrived leaves the stream usable.
	ctx := ctxT(t, 10*time.Second)
	go ts[0].Send(ctx, 1, 5, pattern(8, 1))
	buf := make([]byte, 8)
	if err := ts[1].Recv(ctx, 0, 5, buf); err != nil || !bytes.Equal(buf, pattern(8, 1)) {
		t.Fatalf("after a cancelled receive: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	ts, _ := group(t, 2, nil)
	ctx := ctxT(t, 5*time.Second)
	for _, peer := range []int{-1, 0, 2} {
		var pe *transport.PeerError
		if err := ts[0].Send(ctx, peer, 0, []byte{1}); !errors.As(err, &pe) {
			t.Errorf("send to %d: err = %v, want PeerError", peer, err)
		}
	}
	if _, err := Dial(ctx, Config{Rank: 2, Size: 2, Store: rendezvous.NewMem(), Provider: softverbs.New(softverbs.Options{})}); err == nil {
		t.Error("Dial accepted rank 2 of 2")
	}
	if _, err := Dial(ctx, Config{Rank: 0, Size: 2, Provider: softverbs.New(softverbs.Options{})}); err == nil {
		t.Error("Dial accepted a nil store")
	}
}

func TestCloseFailsBlockedCalls(t *testing.T) {
	ts, _ := group(t, 2, nil)
	ctx := ctxT(t, 10*time.Second)
	errc := make(chan error, 1)
	go func() { errc <- ts[0].Recv(ctx, 1, 0, make([]byte, 4)) }()
	time.Sleep(20 * time.Millisecond)
	ts[0].Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked after Close")
	}
}

func TestAvailable(t *testing.T) {
	if err := Available("soft"); err != nil {
		t.Errorf("Available(soft) = %v", err)
	}
	if err := Available("nonsense"); err == nil {
		t.Error("Available(nonsense) = nil")
	}
	// In a build without -tags rdma there is no hardware provider; with it,
	// this machine class has no device. Either way: ErrNoDevice, no crash.
	if err := Available("ibverbs"); err != nil && !errors.Is(err, verbs.ErrNoDevice) {
		t.Errorf("Available(ibverbs) = %v, want nil or ErrNoDevice", err)
	} else if err != nil {
		t.Logf("Available(ibverbs): %v", err)
		// Then Dial with the default (hardware) provider says so too.
		ctx := ctxT(t, 5*time.Second)
		if _, err := Dial(ctx, Config{Rank: 0, Size: 2, Store: rendezvous.NewMem()}); !errors.Is(err, verbs.ErrNoDevice) {
			t.Errorf("Dial without a device: %v, want ErrNoDevice", err)
		}
	}
}

// Without parking, a large Send waits for its Recv (the rendezvous);
// with parking (the default) it completes before any Recv is posted.
func TestParkingDecidesWhetherLargeSendWaits(t *testing.T) {
	for _, park := range []int64{-1, 0} {
		ts, _ := group(t, 2, func(_ int, c *Config) { c.ParkBytes = park })
		ctx := ctxT(t, 10*time.Second)
		done := make(chan error, 1)
		go func() { done <- ts[0].Send(ctx, 1, 4, pattern(50000, 4)) }()
		select {
		case err := <-done:
			if park < 0 {
				t.Fatalf("ParkBytes %d: Send returned (%v) before any Recv", park, err)
			}
		case <-time.After(200 * time.Millisecond):
			if park >= 0 {
				t.Fatalf("ParkBytes %d: Send still waiting without a Recv", park)
			}
		}
		buf := make([]byte, 50000)
		if err := ts[1].Recv(ctx, 0, 4, buf); err != nil || !bytes.Equal(buf, pattern(50000, 4)) {
			t.Fatalf("ParkBytes %d: recv: %v", park, err)
		}
		if park < 0 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Randomised traffic: every ordered pair of 3 ranks exchanges messages of
// random sizes (zero, eager, rendezvous) on 3 tags, senders and receivers
// running independently with random pauses. Per (pair, tag) order and
// every byte must survive; credits, parking and matching all get mixed.
func TestRandomTraffic(t *testing.T) {
	const n, perTag, tags = 3, 40, 3
	ts, _ := group(t, n, func(_ int, c *Config) { c.ParkBytes = 40000 })
	ctx := ctxT(t, 60*time.Second)
	size := func(from, to, tag, i int) int {
		h := (from*31+to*17+tag*7+i*13)*2654435761%1000003 + 0
		switch h % 4 {
		case 0:
			return 0
		case 1:
			return h % 1024 // eager (EagerLimit is 1024 here)
		default:
			return 1025 + h%20000
		}
	}
	errs := make(chan error, 2*n*n*tags)
	var wg sync.WaitGroup
	for from := range n {
		for to := range n {
			if from == to {
				continue
			}
			for tag := range tags {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := range perTag {
						if i%7 == from {
							time.Sleep(time.Millisecond)
						}
						if err := ts[from].Send(ctx, to, transport.Tag(tag), pattern(size(from, to, tag, i), i+tag)); err != nil {
							errs <- fmt.Errorf("%d->%d tag %d msg %d: %w", from, to, tag, i, err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					for i := range perTag {
						if i%5 == to {
							time.Sleep(2 * time.Millisecond)
						}
						want := pattern(size(from, to, tag, i), i+tag)
						buf := make([]byte, len(want))
						if err := ts[to].Recv(ctx, from, transport.Tag(tag), buf); err != nil {
							errs <- fmt.Errorf("%d<-%d tag %d msg %d: %w", to, from, tag, i, err)
							return
						}
						if !bytes.Equal(buf, want) {
							errs <- fmt.Errorf("%d<-%d tag %d msg %d: payload differs", to, from, tag, i)
							return
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for r, tr := range ts {
		if failed, _ := tr.PeerFailures(); len(failed) > 0 {
			t.Errorf("rank %d: failures %v", r, failed)
		}
		if n := liveTags(tr); n != 0 {
			t.Errorf("rank %d keeps %d tag queues after all traffic", r, n)
		}
	}
}

// liveTags counts the tag queues a transport still holds.
func liveTags(tr *Transport) int {
	n := 0
	for _, p := range tr.peers {
		if p != nil {
			p.mu.Lock()
			n += len(p.tags)
			p.mu.Unlock()
		}
	}
	return n
}

func TestMissingDevicesAgreesOnEveryRank(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	for _, provider := range []string{"soft", "ibverbs"} {
		store := rendezvous.NewMem()
		results := make([]map[int]string, 3)
		var wg sync.WaitGroup
		for r := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, err := MissingDevices(ctx, store, r, 3, provider)
				if err != nil {
					t.Error(err)
				}
				results[r] = m
			}()
		}
		wg.Wait()
		localErr := Available(provider)
		for r, m := range results {
			if localErr == nil && len(m) != 0 {
				t.Errorf("%s rank %d: missing %v, want none", provider, r, m)
			}
			if localErr != nil && (len(m) != 3 || !strings.Contains(m[1], "no RDMA device")) {
				t.Errorf("%s rank %d: missing %v, want all three ranks with the reason", provider, r, m)
			}
		}
	}
	if _, err := MissingDevices(ctx, rendezvous.NewMem(), 3, 3, "soft"); err == nil {
		t.Error("rank 3 of 3 accepted")
	}
}

// Receives posted ahead (PostRecv) take their places in order
// at once: large messages are answered straight into their buffers, so
// even without parking the sends complete before anyone waits.
func TestPostedReceives(t *testing.T) {
	ts, _ := group(t, 2, func(_ int, c *Config) { c.ParkBytes = -1 })
	ctx := ctxT(t, 10*time.Second)
	sizes := []int{5000, 10, 0, 70000, 3000}
	bufs := make([][]byte, len(sizes))
	posted := make([]transport.PostedRecv, len(sizes))
	for i, n := range sizes {
		bufs[i] = make([]byte, n)
		posted[i] = ts[1].PostRecv(ctx, 0, 9, bufs[i])
	}
	for i, n := range sizes {
		if err := ts[0].Send(ctx, 1, 9, pattern(n, i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for i, pr := range posted {
		if err := pr.Wait(); err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
		if !bytes.Equal(bufs[i], pattern(sizes[i], i)) {
			t.Fatalf("receive %d: payload differs", i)
		}
	}
	// A posted receive whose context ends leaves the order intact.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	first := ts[1].PostRecv(short, 0, 9, make([]byte, 8))
	second := ts[1].PostRecv(ctx, 0, 9, make([]byte, 8))
	if err := first.Wait(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first: %v, want deadline exceeded", err)
	}
	go ts[0].Send(ctx, 1, 9, pattern(8, 1))
	if err := second.Wait(); err != nil {
		t.Fatalf("second: %v", err)
	}
	var pe *transport.PeerError
	if err := ts[1].PostRecv(ctx, 5, 9, nil).Wait(); !errors.As(err, &pe) {
		t.Fatalf("post to rank 5: %v, want a PeerError", err)
	}
}
