package shm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
)

func world(t testing.TB, n int, ringBytes int) []*Transport {
	t.Helper()
	return worldSpin(t, n, ringBytes, 0)
}

// worldSpin is world with Config.Spin set to spin.
func worldSpin(t testing.TB, n int, ringBytes int, spin time.Duration) []*Transport {
	t.Helper()
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make([]*Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[r], errs[r] = Dial(ctx, Config{Rank: r, Size: n, Store: store, JobID: t.Name(), RingBytes: ringBytes, Spin: spin,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("dial rank %d: %v", r, err)
		}
	}
	t.Cleanup(func() {
		for _, tr := range out {
			tr.Close()
		}
	})
	return out
}

func pattern(seed, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(seed))).Read(b)
	return b
}

// Messages of every size class (empty, small, the 64 KiB boundary,
// longer than the ring) arrive intact and in order on each tag, also when
// the receiver posts in another tag order than the sender sent (parking).
func TestMessagesArriveIntactAndInOrder(t *testing.T) {
	ts := world(t, 2, 256<<10)
	sizes := []int{0, 1, 15, 16, 17, 4096, 64 << 10, 64<<10 + 1, 200 << 10, 1<<20 + 13}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for round := range 3 {
			for i, n := range sizes {
				for _, tag := range []transport.Tag{1, 2} {
					if err := ts[0].Send(ctx, 1, tag, pattern(round*1000+i*10+int(tag), n)); err != nil {
						errc <- err
						return
					}
				}
			}
		}
		errc <- nil
	}()
	for round := range 3 {
		// Tag 2 first: every tag-1 message before it must be parked.
		for _, tag := range []transport.Tag{2, 1} {
			for i, n := range sizes {
				buf := make([]byte, n)
				if err := ts[1].Recv(ctx, 0, tag, buf); err != nil {
					t.Fatalf("round %d tag %d size %d: %v", round, tag, n, err)
				}
				if !bytes.Equal(buf, pattern(round*1000+i*10+int(tag), n)) {
					t.Fatalf("round %d tag %d size %d: wrong bytes", round, tag, n)
				}
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Both directions at once with messages longer than the ring, many
// rounds: the rings wrap many times and neither side deadlocks.
func TestBidirectionalLongMessages(t *testing.T) {
	ts := world(t, 2, 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for r := range 2 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for k := range 20 {
				if err := ts[r].Send(ctx, 1-r, 7, pattern(r*100+k, 700<<10+k*4)); err != nil {
					errs[2*r] = err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for k := range 20 {
				buf := make([]byte, 700<<10+k*4)
				if err := ts[r].Recv(ctx, 1-r, 7, buf); err != nil {
					errs[2*r+1] = err
					return
				}
				if !bytes.Equal(buf, pattern((1-r)*100+k, len(buf))) {
					errs[2*r+1] = fmt.Errorf("message %d corrupted", k)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("lane %d: %v", i, err)
		}
	}
}

type recSink struct {
	mu   sync.Mutex
	buf  []byte
	offs []int
}

func (s *recSink) Chunk(off int, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offs = append(s.offs, off)
	copy(s.buf[off:], b)
}

// A chunked receive sees every byte once, in chunks starting at multiples
// of transport.ChunkAlign, both straight from the ring and from a parked
// message.
func TestChunkedReceive(t *testing.T) {
	ts := world(t, 2, 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range []int{0, 100, 300 << 10, 1<<20 + 5} {
		for _, parkedFirst := range []bool{false, true} {
			want := pattern(n, n)
			s := &recSink{buf: make([]byte, n)}
			var pr transport.PostedRecv
			if !parkedFirst {
				pr = ts[1].PostRecvChunks(ctx, 0, 3, n, s)
			}
			if err := ts[0].Send(ctx, 1, 3, want); err != nil {
				t.Fatal(err)
			}
			if parkedFirst {
				pr = ts[1].PostRecvChunks(ctx, 0, 3, n, s)
			}
			if err := pr.Wait(); err != nil {
				t.Fatalf("n %d: %v", n, err)
			}
			if !bytes.Equal(s.buf, want) {
				t.Fatalf("n %d parked %v: wrong bytes", n, parkedFirst)
			}
			for _, o := range s.offs {
				if o%transport.ChunkAlign != 0 {
					t.Fatalf("n %d: chunk at offset %d", n, o)
				}
			}
		}
	}
}

// A message of the wrong size is consumed and reported; the next one on
// the same tag is received normally.
func TestSizeMismatchKeepsStreamInSync(t *testing.T) {
	ts := world(t, 2, 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []int{10, 300 << 10} {
		if err := ts[0].SendMulti(ctx, 1, 1, [][]byte{make([]byte, 10), pattern(5, 20)}); err != nil {
			t.Fatal(err)
		}
		_ = n
		var se *transport.SizeError
		if err := ts[1].Recv(ctx, 0, 1, make([]byte, 11)); !errors.As(err, &se) || se.Got != 10 || se.Want != 11 || se.Peer != 0 {
			t.Fatalf("got %v, want a SizeError 10 vs 11 from rank 0", err)
		}
		buf := make([]byte, 20)
		if err := ts[1].Recv(ctx, 0, 1, buf); err != nil || !bytes.Equal(buf, pattern(5, 20)) {
			t.Fatalf("next message: %v", err)
		}
	}
}

// A receive whose context ends names the peer and leaves the stream
// usable.
func TestReceiveDeadline(t *testing.T) {
	ts := world(t, 2, 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := ts[1].Recv(ctx, 0, 9, make([]byte, 4))
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Peer != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error naming rank 0", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := ts[0].Send(ctx2, 1, 9, []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if err := ts[1].Recv(ctx2, 0, 9, buf); err != nil || string(buf) != "abcd" {
		t.Fatalf("after a timeout: %v %q", err, buf)
	}
}

// A send blocks on a full ring only until the receiving rank's bell goroutine
// parks the messages: a sender never waits for a receive to be posted.
func TestSendDoesNotNeedAPostedReceive(t *testing.T) {
	ts := world(t, 2, 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for k := range 8 {
		if err := ts[0].Send(ctx, 1, transport.Tag(k), pattern(k, 200<<10)); err != nil {
			t.Fatalf("send %d with nothing posted: %v", k, err)
		}
	}
	for k := 7; k >= 0; k-- {
		buf := make([]byte, 200<<10)
		if err := ts[1].Recv(ctx, 0, transport.Tag(k), buf); err != nil || !bytes.Equal(buf, pattern(k, len(buf))) {
			t.Fatalf("recv %d: %v", k, err)
		}
	}
}

// Abort looks like a crash: the peer's pending receive fails naming it,
// and it is announced through PeerFailures. Close is a goodbye: messages
// sent before it still arrive, then receives fail with ErrPeerLeft.
func TestAbortAndGoodbye(t *testing.T) {
	ts := world(t, 3, 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, next := ts[0].PeerFailures()
	errc := make(chan error, 1)
	go func() { errc <- ts[0].Recv(ctx, 1, 1, make([]byte, 8)) }()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	ts[1].Abort()
	err := <-errc
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Peer != 1 || errors.Is(err, transport.ErrPeerLeft) {
		t.Fatalf("got %v, want a failure naming rank 1", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failure seen after %v", d)
	}
	select {
	case <-next:
	case <-time.After(2 * time.Second):
		t.Fatal("no failure announced")
	}
	if f, _ := ts[0].PeerFailures(); len(f) != 1 || f[0].Peer != 1 {
		t.Fatalf("failures %v", f)
	}

	if err := ts[2].Send(ctx, 0, 4, []byte("last")); err != nil {
		t.Fatal(err)
	}
	ts[2].Close()
	buf := make([]byte, 4)
	if err := ts[0].Recv(ctx, 2, 4, buf); err != nil || string(buf) != "last" {
		t.Fatalf("message sent before the goodbye: %v %q", err, buf)
	}
	if err := ts[0].Recv(ctx, 2, 4, buf); !errors.Is(err, transport.ErrPeerLeft) {
		t.Fatalf("after goodbye: %v, want ErrPeerLeft", err)
	}
}

// Ranks of another job cannot map the segment.
func TestOtherJobRefused(t *testing.T) {
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	var trs [2]*Transport
	for r := range 2 {
		go func() {
			var err error
			trs[r], err = Dial(ctx, Config{Rank: r, Size: 2, Store: store, JobID: fmt.Sprint("job", r), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			errs <- err
		}()
	}
	// Rank 1 reads job0's key only if the job ids collide: publish one
	// under its name by hand so that it finds a foreign segment.
	_ = store.Set(ctx, segKey("job1", 0, 1), []byte("1 0"))
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a rank connected across jobs")
		}
	}
	for _, tr := range trs {
		if tr != nil {
			tr.Close()
		}
	}
}

// A corrupted ring (a header announcing an absurd length) fails the peer
// with an error instead of crashing the reader.
func TestCorruptHeaderFailsThePeer(t *testing.T) {
	ts := world(t, 2, 256<<10)
	pe := ts[0].peers[1]
	pe.txLock <- struct{}{}
	binary.LittleEndian.PutUint64(pe.out.data[pe.txHead&pe.out.mask:], 1)
	binary.LittleEndian.PutUint64(pe.out.data[pe.txHead&pe.out.mask+8:], 1<<50)
	pe.publish(pe.txHead + recHeader)
	<-pe.txLock
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := ts[1].Recv(ctx, 0, 1, make([]byte, 8))
	var perr *transport.PeerError
	if !errors.As(err, &perr) || perr.Peer != 0 || !strings.Contains(err.Error(), "corrupt message header") {
		t.Fatalf("got %v, want a failure naming rank 0's corrupt header", err)
	}
}

// Segments are created mode 0600 and have no name in any file system.
func TestSegmentIsPrivate(t *testing.T) {
	fd, mem, err := newSegment(segmentSize(256 << 10))
	if err != nil {
		t.Fatal(err)
	}
	defer unmap(mem)
	defer closeFD(fd)
	fi, err := os.Stat(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("segment mode %v, want 0600", perm)
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil || !strings.HasPrefix(link, "/memfd:") {
		t.Errorf("segment is %q (%v), want an anonymous memfd", link, err)
	}
}

// A process that reaches the creator's doorbell socket without having
// mapped the segment (it cannot present the secret) is refused.
func TestDoorbellWithoutTheSecretIsRefused(t *testing.T) {
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		tr, err := Dial(ctx, Config{Rank: 0, Size: 2, Store: store, JobID: "j", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if tr != nil {
			tr.Close()
		}
		errc <- err
	}()
	raw, err := store.Get(ctx, segKey("j", 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	var pid, fd int
	var name string
	if _, err := fmt.Sscan(string(raw), &pid, &fd, &name); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "did not present the segment's secret") {
		t.Fatalf("rank 0: %v, want a refusal", err)
	}
}
