package tcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
)

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// dialAll connects n ranks over loopback; edit adjusts each rank's config.
func dialAll(t testing.TB, n int, edit func(*Config)) ([]*Transport, []error) {
	t.Helper()
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts := make([]*Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := Config{Rank: r, Size: n, Store: store, JobID: "test", Token: "secret", Bind: "127.0.0.1:0",
				Logger: slog.New(slog.NewTextHandler(&syncBuf{}, nil))}
			if edit != nil {
				edit(&cfg)
			}
			ts[r], errs[r] = Dial(ctx, cfg)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, tr := range ts {
			if tr != nil {
				tr.Close()
			}
		}
	})
	return ts, errs
}

func mustDial(t testing.TB, n int, edit func(*Config)) []*Transport {
	t.Helper()
	ts, errs := dialAll(t, n, edit)
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return ts
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed*13 + i>>8)
	}
	return b
}

func TestMessagesArriveInOrderPerTag(t *testing.T) {
	// Small SplitBytes so that big messages are cut across 3 streams.
	ts := mustDial(t, 3, func(c *Config) { c.Streams = 3; c.SplitBytes = 10000 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sizes := []int{0, 1, 9999, 10000, 123457, 5, 1 << 20}
	var wg sync.WaitGroup
	for src := range ts {
		for dst := range ts {
			if src == dst {
				continue
			}
			for tag := transport.Tag(1); tag <= 2; tag++ {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i, n := range sizes {
						if err := ts[src].Send(ctx, dst, tag, pattern(n, i+int(tag)+src)); err != nil {
							t.Errorf("send %d->%d: %v", src, dst, err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					for i, n := range sizes {
						if i%2 == 1 {
							time.Sleep(time.Millisecond) // let some messages arrive before their Recv
						}
						got := make([]byte, n)
						if err := ts[dst].Recv(ctx, src, tag, got); err != nil {
							t.Errorf("recv %d<-%d: %v", dst, src, err)
							return
						}
						if !bytes.Equal(got, pattern(n, i+int(tag)+src)) {
							t.Errorf("recv %d<-%d tag %d message %d (%d bytes): wrong content", dst, src, tag, i, n)
						}
					}
				}()
			}
		}
	}
	wg.Wait()
}

func TestSizeMismatchIsReportedAndStreamStaysInSync(t *testing.T) {
	ts := mustDial(t, 2, nil)
	ctx := context.Background()
	go func() {
		_ = ts[1].Send(ctx, 0, 7, make([]byte, 100))
		_ = ts[1].Send(ctx, 0, 7, []byte("next"))
	}()
	err := ts[0].Recv(ctx, 1, 7, make([]byte, 50))
	var se *transport.SizeError
	if !errors.As(err, &se) || se.Got != 100 || se.Want != 50 || se.Peer != 1 {
		t.Fatalf("err = %v, want SizeError 100 vs 50 from rank 1", err)
	}
	got := make([]byte, 4)
	if err := ts[0].Recv(ctx, 1, 7, got); err != nil || string(got) != "next" {
		t.Fatalf("after mismatch: %q, %v", got, err)
	}
}

func TestRecvDeadlineNamesPeer(t *testing.T) {
	ts := mustDial(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := ts[0].Recv(ctx, 1, 1, make([]byte, 8))
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Peer != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	// The pair still works after a timed-out Recv.
	go func() { _ = ts[1].Send(context.Background(), 0, 2, []byte("ok")) }()
	got := make([]byte, 2)
	if err := ts[0].Recv(context.Background(), 1, 2, got); err != nil || string(got) != "ok" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestPeerDeathIsNoticedAndAnnounced(t *testing.T) {
	ts := mustDial(t, 3, nil)
	_, next := ts[0].PeerFailures()
	errc := make(chan error, 1)
	go func() { errc <- ts[0].Recv(context.Background(), 2, 1, make([]byte, 8)) }()
	time.Sleep(10 * time.Millisecond)
	ts[2].close(false) // as if killed: no goodbye
	select {
	case err := <-errc:
		var pe *transport.PeerError
		if !errors.As(err, &pe) || pe.Peer != 2 {
			t.Fatalf("err = %v, want PeerError for rank 2", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv from a closed peer did not return")
	}
	select {
	case <-next:
	case <-time.After(5 * time.Second):
		t.Fatal("no failure announced")
	}
	failed, _ := ts[0].PeerFailures()
	if len(failed) != 1 || failed[0].Peer != 2 {
		t.Fatalf("failures = %v", failed)
	}
	// Rank 1 is unaffected.
	go func() { _ = ts[1].Send(context.Background(), 0, 3, []byte("alive")) }()
	got := make([]byte, 5)
	if err := ts[0].Recv(context.Background(), 1, 3, got); err != nil {
		t.Fatal(err)
	}
}

func TestWrongTokenIsRefusedAndLogged(t *testing.T) {
	logs := &syncBuf{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	store := rendezvous.NewMem()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := "tok-AAAA1111"
			if r == 1 {
				tok = "tok-BBBB2222"
			}
			tr, err := Dial(ctx, Config{Rank: r, Size: 2, Store: store, JobID: "j", Token: tok, Bind: "127.0.0.1:0",
				Logger: slog.New(slog.NewTextHandler(logs, nil))})
			errs[r] = err
			if tr != nil {
				tr.Close()
			}
		}()
	}
	wg.Wait()
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("errs = %v, want both ranks to fail", errs)
	}
	if !errors.Is(errs[1], errAuth) {
		t.Errorf("dialer error %v does not say authentication", errs[1])
	}
	if !bytes.Contains([]byte(errs[0].Error()), []byte("[1]")) {
		t.Errorf("listener error %v does not name rank 1", errs[0])
	}
	if !bytes.Contains([]byte(logs.String()), []byte("failed authentication")) {
		t.Errorf("refusal not logged; log:\n%s", logs.String())
	}
	if bytes.Contains([]byte(logs.String()), []byte("tok-AAAA")) || bytes.Contains([]byte(logs.String()), []byte("tok-BBBB")) {
		t.Errorf("a token leaked into the log:\n%s", logs.String())
	}
}

func TestGarbageOnListeningPortDoesNotDisturbTheJob(t *testing.T) {
	ts := mustDial(t, 2, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	junk := [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		append(append([]byte{}, helloMagic[:]...), 0xff, 0xff), // truncated hello
		(&hello{Version: ProtocolVersion, Flags: flagLittleEndian, From: 1, To: 0, Size: 2, Streams: 2, JobID: "test"}).encode(), // duplicate rank, no proof
		bytes.Repeat([]byte{0}, 4096),
	}
	for _, j := range junk {
		c, err := net.Dial("tcp", ts[0].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(j)
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = ts[1].Send(ctx, 0, 1, []byte("still fine")) }()
	got := make([]byte, 10)
	if err := ts[0].Recv(ctx, 1, 1, got); err != nil || string(got) != "still fine" {
		t.Fatalf("%q %v", got, err)
	}
	if f, _ := ts[0].PeerFailures(); len(f) != 0 {
		t.Fatalf("garbage caused failures: %v", f)
	}
}

func TestResolveBind(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"127.0.0.0/8", "127.0.0.1:0"},
		{"127.0.0.0/8:7000", "127.0.0.1:7000"},
		{"lo", "127.0.0.1:0"},
		{"lo:123", "127.0.0.1:123"},
		{"127.0.0.1", "127.0.0.1:0"},
	} {
		got, err := ResolveBind(tc.spec)
		if err != nil || got != tc.want {
			t.Errorf("ResolveBind(%q) = %q, %v; want %q", tc.spec, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "no-such-iface0", "198.51.100.0/24"} {
		if got, err := ResolveBind(bad); err == nil {
			t.Errorf("ResolveBind(%q) = %q, want error", bad, got)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	var b [frameHeaderLen]byte
	for _, h := range []frameHeader{{}, {PartLen: 5, Total: 10, Offset: 5, Tag: 3, ID: 9}, {PartLen: 4096, Total: 1 << 20}, {Bye: true}} {
		h.encode(&b)
		f.Add(append([]byte(nil), b[:]...))
	}
	f.Add([]byte("garbage"))
	f.Add(make([]byte, frameHeaderLen))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := decodeFrameHeader(data, 1<<30)
		if err != nil {
			return
		}
		if h.Total > 1<<30 || h.Offset+uint64(h.PartLen) > h.Total {
			t.Fatalf("accepted inconsistent header %+v", h)
		}
		var re [frameHeaderLen]byte
		h.encode(&re)
		if !bytes.Equal(re[:], data[:frameHeaderLen]) {
			t.Fatalf("round trip changed header")
		}
	})
}

func FuzzReadHello(f *testing.F) {
	f.Add((&hello{Version: 1, Flags: 1, From: 2, To: 1, Size: 4, Streams: 2, JobID: "job"}).encode())
	f.Add([]byte("STRANDHS"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, raw, err := readHello(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(raw) > helloFixedLen+maxJobIDLen || !bytes.Equal(h.encode(), raw) {
			t.Fatalf("hello %+v does not round-trip", h)
		}
		_ = h.check(1, 4, 2, "job") // must not panic on any accepted hello
	})
}

func TestHandshakeDirect(t *testing.T) {
	// Both sides over a pipe: the right token passes, a wrong one fails on both ends.
	for _, tc := range []struct {
		tok  string
		pass bool
	}{{"k", true}, {"other", false}} {
		a, b := net.Pipe()
		srvErr := make(chan error, 1)
		go func() {
			_, err := serverHandshake(a, []byte("k"), 0, 2, 1, "j")
			srvErr <- err
			a.Close()
		}()
		err := clientHandshake(b, []byte(tc.tok), hello{Version: ProtocolVersion, Flags: flagLittleEndian, From: 1, To: 0, Size: 2, Streams: 1, JobID: "j"})
		b.Close()
		serr := <-srvErr
		if (err == nil) != tc.pass || (serr == nil) != tc.pass {
			t.Errorf("token %q: client %v, server %v", tc.tok, err, serr)
		}
	}
}

func BenchmarkSendRecv(b *testing.B) {
	for _, n := range []int{4 << 10, 16 << 20} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ts := mustDial(b, 2, nil)
			buf, out := make([]byte, n), make([]byte, n)
			ctx := context.Background()
			done := make(chan error, 1)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			go func() { // a long-lived receiver, so the loop measures the transport only
				for i := 0; i < b.N; i++ {
					if err := ts[1].Recv(ctx, 0, 1, out); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			for i := 0; i < b.N; i++ {
				if err := ts[0].Send(ctx, 1, 1, buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

func TestCleanCloseIsNotAFailure(t *testing.T) {
	ts := mustDial(t, 2, func(c *Config) { c.Streams = 3; c.SplitBytes = 4096 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := pattern(100000, 1)
	if err := ts[1].Send(ctx, 0, 1, big); err != nil {
		t.Fatal(err)
	}
	ts[1].Close()
	// A message sent before the goodbye is still delivered...
	got := make([]byte, len(big))
	if err := ts[0].Recv(ctx, 1, 1, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("message sent before close: %v", err)
	}
	// ...then Recv fails at once, saying the peer left, and nobody calls it a failure.
	err := ts[0].Recv(ctx, 1, 1, got)
	if !errors.Is(err, errPeerLeft) {
		t.Fatalf("recv after goodbye: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	if f, _ := ts[0].PeerFailures(); len(f) != 0 {
		t.Fatalf("clean close announced as failure: %v", f)
	}
}

func TestPostedReceivesKeepTheirOrder(t *testing.T) {
	ts := mustDial(t, 2, func(c *Config) { c.SplitBytes = 1000 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	early := pattern(3000, 0)
	if err := ts[1].Send(ctx, 0, 4, early); err != nil { // arrives before any post
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	bufs := [][]byte{make([]byte, 3000), make([]byte, 5), make([]byte, 4000)}
	var posted []transport.PostedRecv
	for _, b := range bufs {
		posted = append(posted, ts[0].PostRecv(ctx, 1, 4, b))
	}
	go func() {
		_ = ts[1].Send(ctx, 0, 4, pattern(5, 1))
		_ = ts[1].Send(ctx, 0, 4, pattern(4000, 2))
	}()
	for i := len(posted) - 1; i >= 0; i-- { // waiting order does not matter
		if err := posted[i].Wait(); err != nil {
			t.Fatalf("posted %d: %v", i, err)
		}
	}
	for i, b := range bufs {
		if !bytes.Equal(b, pattern(len(b), i)) {
			t.Errorf("posted receive %d got the wrong message", i)
		}
	}
}

func TestSendMultiIsLikeSendsInOrder(t *testing.T) {
	ts := mustDial(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs := [][]byte{pattern(40, 0), nil, pattern(4096, 2)}
	if err := ts[0].SendMulti(ctx, 1, 9, msgs); err != nil {
		t.Fatal(err)
	}
	if err := ts[0].Send(ctx, 1, 9, pattern(7, 3)); err != nil {
		t.Fatal(err)
	}
	for i, want := range append(msgs, pattern(7, 3)) {
		got := make([]byte, len(want))
		if err := ts[1].Recv(ctx, 0, 9, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// chunkCollector records what a ChunkSink is handed: it copies each chunk
// into place and counts every byte it saw, so gaps and overlaps show.
type chunkCollector struct {
	mu      sync.Mutex
	buf     []byte
	seen    []int
	badOffs []int
}

func newCollector(n int) *chunkCollector {
	return &chunkCollector{buf: make([]byte, n), seen: make([]int, n)}
}

func (c *chunkCollector) Chunk(off int, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off%transport.ChunkAlign != 0 {
		c.badOffs = append(c.badOffs, off)
	}
	copy(c.buf[off:], b)
	for i := range b {
		c.seen[off+i]++
	}
}

func (c *chunkCollector) check(t *testing.T, name string, want []byte) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.badOffs) > 0 {
		t.Errorf("%s: chunks at unaligned offsets %v", name, c.badOffs)
	}
	for i, k := range c.seen {
		if k != 1 {
			t.Errorf("%s: byte %d handed to the sink %d times", name, i, k)
			break
		}
	}
	if !bytes.Equal(c.buf, want) {
		t.Errorf("%s: wrong content", name)
	}
}

func TestChunkedReceivesSeeEveryByteOnce(t *testing.T) {
	// Messages split over 3 streams, some arriving before their receive
	// (parked, then fed from Wait), others after (read straight from the
	// socket), plus a size mismatch that must not reach the sink and must
	// leave the stream in sync.
	ts := mustDial(t, 2, func(c *Config) { c.Streams = 3; c.SplitBytes = 64 << 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sizes := []int{0, 1, 5000, 64 << 10, 3<<20 + 17}
	for i, n := range sizes { // early: sent before anything is posted
		if err := ts[1].Send(ctx, 0, 3, pattern(n, i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	for i, n := range sizes {
		c := newCollector(n)
		if err := ts[0].PostRecvChunks(ctx, 1, 3, n, c).Wait(); err != nil {
			t.Fatalf("early message %d: %v", i, err)
		}
		c.check(t, fmt.Sprintf("early message %d", i), pattern(n, i))
	}
	cs := make([]*chunkCollector, len(sizes))
	posted := make([]transport.PostedRecv, len(sizes))
	for i, n := range sizes { // late: posted first
		cs[i] = newCollector(n)
		posted[i] = ts[0].PostRecvChunks(ctx, 1, 5, n, cs[i])
	}
	wrong := newCollector(10)
	posted = append(posted, ts[0].PostRecvChunks(ctx, 1, 5, 10, wrong))
	after := make([]byte, 3)
	posted = append(posted, ts[0].PostRecv(ctx, 1, 5, after))
	go func() {
		for i, n := range sizes {
			_ = ts[1].Send(ctx, 0, 5, pattern(n, i+10))
		}
		_ = ts[1].Send(ctx, 0, 5, make([]byte, 11))
		_ = ts[1].Send(ctx, 0, 5, []byte("end"))
	}()
	for i, pr := range posted {
		err := pr.Wait()
		switch {
		case i < len(sizes) && err != nil:
			t.Fatalf("late message %d: %v", i, err)
		case i == len(sizes):
			var se *transport.SizeError
			if !errors.As(err, &se) || se.Want != 10 || se.Got != 11 {
				t.Fatalf("mismatched chunked receive: %v, want SizeError 11 vs 10", err)
			}
		case i > len(sizes) && err != nil:
			t.Fatalf("receive after the mismatch: %v", err)
		}
	}
	for i, n := range sizes {
		cs[i].check(t, fmt.Sprintf("late message %d", i), pattern(n, i+10))
	}
	for i, k := range wrong.seen {
		if k != 0 {
			t.Fatalf("mismatched message reached the sink at byte %d", i)
		}
	}
	if string(after) != "end" {
		t.Fatalf("after the mismatch got %q, want %q", after, "end")
	}
}

func TestChunkedReceiveDeadlineNamesPeer(t *testing.T) {
	ts := mustDial(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := ts[0].PostRecvChunks(ctx, 1, 1, 100, newCollector(100)).Wait()
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Peer != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline PeerError naming rank 1", err)
	}
	if err := ts[0].PostRecvChunks(context.Background(), 1, 1, 5, nil).Wait(); err == nil {
		t.Fatal("a chunked receive without a sink was accepted")
	}
}

func TestSpinBudgetAdapts(t *testing.T) {
	var s spinPolicy
	if s.budget() != 0 {
		t.Fatal("a policy with no maximum spins")
	}
	s.max = 40 * time.Microsecond
	s.cur.Store(int64(s.max))
	d := s.budget()
	for d >= minSpin { // every spin misses: the budget halves down to zero
		s.record(false, d)
		if nd := s.budget(); nd != d/2 && !(d/2 < minSpin && nd == 0) {
			t.Fatalf("after a miss at %v the budget is %v", d, nd)
		}
		d /= 2
	}
	probes := 0
	for i := 0; i < 10*spinProbe; i++ {
		if s.budget() > 0 {
			probes++
		}
	}
	if probes != 10 {
		t.Fatalf("%d probes in %d receives, want 10", probes, 10*spinProbe)
	}
	s.record(true, s.max/4) // a probe that hits restores spinning
	if got := s.budget(); got != s.max/2 {
		t.Fatalf("after a hit the budget is %v, want %v", got, s.max/2)
	}
}

func TestSmallReceivesWorkWithAndWithoutSpinning(t *testing.T) {
	for _, spin := range []time.Duration{-1, 0, 20 * time.Microsecond} {
		ts := mustDial(t, 2, func(c *Config) { c.Spin = spin })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for i := 0; i < 50; i++ { // ping-pong: each receive waits for a message in flight
			a, b := i%2, 1-i%2
			go func() { _ = ts[a].Send(ctx, b, 1, pattern(4096, i)) }()
			got := make([]byte, 4096)
			if err := ts[b].Recv(ctx, a, 1, got, transport.Soon); err != nil || !bytes.Equal(got, pattern(4096, i)) {
				t.Fatalf("spin %v, message %d: %v", spin, i, err)
			}
		}
		cancel()
	}
}

// With one P the spinning receive polls the socket (spinSolo); messages on
// other tags, late messages, deadlines and dead peers must all still work.
func TestSoloSpinReceives(t *testing.T) {
	old := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	ts := mustDial(t, 2, func(c *Config) { c.Spin = 200 * time.Microsecond })
	if !ts[0].spin.soloP || ts[0].spin.max != 200*time.Microsecond {
		t.Fatalf("soloP %v, max %v: want the socket-polling spin", ts[0].spin.soloP, ts[0].spin.max)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 100; i++ {
		a, b := i%2, 1-i%2
		go func() {
			// Another tag's message first: the spinner must step aside
			// for the reader and then poll again.
			_ = ts[a].Send(ctx, b, 2, pattern(64, i))
			if i%10 == 9 {
				time.Sleep(2 * time.Millisecond) // late: the spin gives up and parks
			}
			_ = ts[a].Send(ctx, b, 1, pattern(4096, i))
		}()
		got := make([]byte, 4096)
		if err := ts[b].Recv(ctx, a, 1, got, transport.Soon); err != nil || !bytes.Equal(got, pattern(4096, i)) {
			t.Fatalf("message %d: %v", i, err)
		}
		other := make([]byte, 64)
		if err := ts[b].Recv(ctx, a, 2, other, transport.Soon); err != nil || !bytes.Equal(other, pattern(64, i)) {
			t.Fatalf("other-tag message %d: %v", i, err)
		}
	}

	short, cancelShort := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancelShort()
	err := ts[0].Recv(short, 1, 3, make([]byte, 16), transport.Soon)
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Peer != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline PeerError naming rank 1", err)
	}

	go func() { time.Sleep(5 * time.Millisecond); ts[1].Abort() }()
	err = ts[0].Recv(ctx, 1, 4, make([]byte, 16), transport.Soon)
	if !errors.As(err, &pe) || pe.Peer != 1 {
		t.Fatalf("err = %v, want a PeerError naming the dead rank 1", err)
	}
}

// TestGarbageFloodIsLoggedOncePerHost: a hundred garbage connections from
// one host are each dropped within the handshake timeout but logged once
// (rate-limited per peer host), and the job is undisturbed.
func TestGarbageFloodIsLoggedOncePerHost(t *testing.T) {
	logs := &syncBuf{}
	const hs = 200 * time.Millisecond
	ts := mustDial(t, 2, func(c *Config) {
		c.HandshakeTimeout = hs
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", ts[0].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		c.Close()
	}
	// a silent connection: dropped after the handshake timeout
	silent, err := net.Dial("tcp", ts[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(20 * hs))
	start := time.Now()
	if _, err := silent.Read(make([]byte, 1)); err == nil || time.Since(start) >= 20*hs {
		t.Errorf("a silent connection was not dropped within the handshake timeout (%v after %v)", err, time.Since(start))
	}
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(logs.String(), "tcp: refused connection"); n != 1 {
		t.Errorf("%d log lines for 101 bad connections from one host, want 1:\n%s", n, logs.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = ts[1].Send(ctx, 0, 1, []byte("still fine")) }()
	got := make([]byte, 10)
	if err := ts[0].Recv(ctx, 1, 1, got); err != nil || string(got) != "still fine" {
		t.Fatalf("%q %v", got, err)
	}
}
