package tcp

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
)

// A rank that gives up because it saw another rank fail must not look
// crashed to its healthy peers: frames it is writing or reading when it
// gives up are finished, and its goodbye names the rank that failed.

// slowSink is a ChunkSink that sleeps on every chunk (a busy receiver),
// copying the bytes into got.
type slowSink struct {
	delay time.Duration
	got   []byte
	calls atomic.Int32
	first chan struct{} // closed at the first chunk
	once  sync.Once
}

func (s *slowSink) Chunk(off int, b []byte) {
	s.once.Do(func() { close(s.first) })
	s.calls.Add(1)
	time.Sleep(s.delay)
	copy(s.got[off:], b)
}

func noFailures(t *testing.T, tr *Transport, who string) {
	t.Helper()
	if f, _ := tr.PeerFailures(); len(f) != 0 {
		t.Fatalf("%s announced failures %v; nobody failed", who, f)
	}
}

func TestGoodbyeNamesTheRankThatFailed(t *testing.T) {
	ts := mustDial(t, 3, nil)
	// Rank 1 saw rank 2 fail (as if rank 2's sockets to it broke); rank 0
	// has not heard of it. Rank 1 then gives up and closes.
	ts[1].noteFailure(&transport.PeerError{Peer: 2, Op: "connection", Err: errors.New("reset")})
	noFailures(t, ts[0], "rank 0 before the goodbye")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recvErr := make(chan error, 1)
	go func() { recvErr <- ts[0].Recv(ctx, 1, 7, make([]byte, 4)) }()
	time.Sleep(10 * time.Millisecond)
	ts[1].Close()
	err := <-recvErr
	if !errors.Is(err, transport.ErrPeerLeft) {
		t.Fatalf("recv from the leaving rank: %v, want ErrPeerLeft", err)
	}
	// The culprit is announced before the waiter wakes.
	failed, _ := ts[0].PeerFailures()
	if len(failed) != 1 || failed[0].Peer != 2 || !strings.Contains(failed[0].Error(), "reported by rank 1") {
		t.Fatalf("failures after rank 1's goodbye: %v, want rank 2 reported by rank 1", failed)
	}
	// Rank 1 itself is not a failure: it said goodbye.
	// Rank 2 is still connected to rank 0; its own messages still arrive
	// (the report is information for collectives, it cuts nothing).
	go func() { _ = ts[2].Send(ctx, 0, 9, []byte("hi")) }()
	got := make([]byte, 2)
	if err := ts[0].Recv(ctx, 2, 9, got); err != nil || string(got) != "hi" {
		t.Fatalf("rank 2's message after the report: %q, %v", got, err)
	}
	// A second report of the same rank (its own reset) is not announced again.
	ts[0].noteFailure(&transport.PeerError{Peer: 2, Op: "connection", Err: errors.New("reset")})
	if f, _ := ts[0].PeerFailures(); len(f) != 1 {
		t.Fatalf("rank 2 announced %d times", len(f))
	}
}

func TestPlainGoodbyeNamesNobody(t *testing.T) {
	ts := mustDial(t, 3, nil)
	ts[1].Close()
	time.Sleep(50 * time.Millisecond)
	noFailures(t, ts[0], "rank 0")
	noFailures(t, ts[2], "rank 2")
}

func TestReceiverGivingUpMidMessageDoesNotBreakTheConnection(t *testing.T) {
	// Rank 0 gives up on a receive while its sink is busy with the
	// message's bytes. The message is drained, nobody is announced failed,
	// and the next message on the pair arrives intact.
	ts := mustDial(t, 2, func(c *Config) { c.Streams = 1 })
	const n = 4 << 20
	msg := pattern(n, 3)
	sink := &slowSink{delay: 2 * time.Millisecond, got: make([]byte, n), first: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	pr := ts[0].PostRecvChunks(ctx, 1, 1, n, sink)
	sendErr := make(chan error, 1)
	go func() { sendErr <- ts[1].Send(context.Background(), 0, 1, msg) }()
	<-sink.first
	cancel()
	if err := pr.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned receive: %v, want context.Canceled", err)
	}
	calls := sink.calls.Load()
	if err := <-sendErr; err != nil {
		t.Fatalf("send of the abandoned message: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	if sink.calls.Load() != calls {
		t.Fatal("the sink was called after its receive returned")
	}
	noFailures(t, ts[0], "the receiver")
	noFailures(t, ts[1], "the sender")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	next := pattern(1000, 4)
	go func() { _ = ts[1].Send(ctx2, 0, 2, next) }()
	got := make([]byte, len(next))
	if err := ts[0].Recv(ctx2, 1, 2, got); err != nil || !bytes.Equal(got, next) {
		t.Fatalf("next message: %v (equal %v)", err, bytes.Equal(got, next))
	}
}

func TestSenderCancelledMidFrameFinishesTheFrame(t *testing.T) {
	// A sender cancelled while its frame is half on the wire (the receiver
	// is slow) finishes the frame instead of cutting the connection: the
	// receiver gets the whole message, nobody is announced failed, and the
	// pair keeps working. Both a single-frame and a split message.
	for _, tc := range []struct {
		name    string
		streams int
	}{{"one stream", 1}, {"split over 3 streams", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := mustDial(t, 2, func(c *Config) {
				c.Streams = tc.streams
				c.SplitBytes = 64 << 10
				c.SocketBuffer = 64 << 10
			})
			const n = 4 << 20
			msg := pattern(n, 5)
			sink := &slowSink{delay: time.Millisecond, got: make([]byte, n), first: make(chan struct{})}
			recvCtx, recvCancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer recvCancel()
			pr := ts[0].PostRecvChunks(recvCtx, 1, 1, n, sink)
			ctx, cancel := context.WithCancel(context.Background())
			sendErr := make(chan error, 1)
			go func() { sendErr <- ts[1].Send(ctx, 0, 1, msg) }()
			<-sink.first
			time.Sleep(5 * time.Millisecond)
			cancel()
			if err := <-sendErr; err == nil {
				t.Log("send finished before the cancel took effect")
			} else if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled send: %v, want context.Canceled", err)
			}
			if err := pr.Wait(); err != nil {
				t.Fatalf("receive of the interrupted message: %v", err)
			}
			if !bytes.Equal(sink.got, msg) {
				t.Fatal("the interrupted message arrived corrupted")
			}
			noFailures(t, ts[0], "the receiver")
			noFailures(t, ts[1], "the sender")
			ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel2()
			next := pattern(100<<10, 6)
			go func() { _ = ts[1].Send(ctx2, 0, 2, next) }()
			got := make([]byte, len(next))
			if err := ts[0].Recv(ctx2, 1, 2, got); err != nil || !bytes.Equal(got, next) {
				t.Fatalf("next message: %v", err)
			}
		})
	}
}

func TestAbortDuringSplitSendsDoesNotHangTheSenders(t *testing.T) {
	// Two goroutines keep split messages queued for every part writer
	// while the receiver is slow; the sender's transport is then aborted.
	// Every Send must return (a part still queued when its writer exits is
	// never written: the sender must not wait for it).
	for rep := 0; rep < 4; rep++ {
		ts := mustDial(t, 2, func(c *Config) {
			c.Streams = 3
			c.SplitBytes = 64 << 10
			c.SocketBuffer = 64 << 10
		})
		const n = 1 << 20
		var posted []transport.PostedRecv
		first := make(chan struct{})
		for i := 0; i < 8; i++ {
			sink := &slowSink{delay: time.Millisecond, got: make([]byte, n), first: make(chan struct{})}
			if i == 0 {
				sink.first = first
			}
			posted = append(posted, ts[0].PostRecvChunks(context.Background(), 1, 1, n, sink))
		}
		sendErrs := make(chan error, 8)
		for g := 0; g < 2; g++ {
			go func() {
				for i := 0; i < 4; i++ {
					sendErrs <- ts[1].Send(context.Background(), 0, 1, pattern(n, i))
				}
			}()
		}
		<-first
		time.Sleep(time.Duration(rep) * time.Millisecond)
		ts[1].Abort()
		for i := 0; i < 8; i++ {
			select {
			case <-sendErrs:
			case <-time.After(10 * time.Second):
				t.Fatalf("rep %d: a Send did not return after its transport was aborted", rep)
			}
		}
		for _, pr := range posted {
			_ = pr.Wait() // the receiver sees the abort as a failure; it must return
		}
	}
}
