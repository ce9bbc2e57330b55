package loopback

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strand-ml/strand/internal/alloctest"
	"github.com/strand-ml/strand/transport"
)

func TestOrderSizeAndDeath(t *testing.T) {
	ts := New(3)
	ctx := context.Background()
	for i := byte(0); i < 3; i++ {
		if err := ts[0].Send(ctx, 1, 5, []byte{i, i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := byte(0); i < 2; i++ {
		got := make([]byte, 2)
		if err := ts[1].Recv(ctx, 0, 5, got); err != nil || got[0] != i {
			t.Fatalf("message %d: %v %v", i, got, err)
		}
	}
	var se *transport.SizeError
	if err := ts[1].Recv(ctx, 0, 5, make([]byte, 3)); !errors.As(err, &se) || se.Got != 2 {
		t.Fatalf("err = %v, want size error", err)
	}
	errc := make(chan error)
	go func() { errc <- ts[1].Recv(ctx, 2, 1, make([]byte, 1)) }()
	time.Sleep(5 * time.Millisecond)
	ts[2].Close()
	var pe *transport.PeerError
	if err := <-errc; !errors.As(err, &pe) || pe.Peer != 2 {
		t.Fatalf("err = %v", err)
	}
	if f, _ := ts[0].PeerFailures(); len(f) != 1 || f[0].Peer != 2 {
		t.Fatalf("failures %v", f)
	}
}

func TestWaitingRecvsAreWokenAndCancellable(t *testing.T) {
	ts := New(2)
	ctx := context.Background()
	// Two Recvs wait on one tag; two messages wake both.
	errc := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { errc <- ts[1].Recv(ctx, 0, 9, make([]byte, 3)) }()
	}
	time.Sleep(5 * time.Millisecond)
	for i := 0; i < 2; i++ {
		if err := ts[0].Send(ctx, 1, 9, []byte("abc")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	// A waiting Recv gives up with its context, naming the peer.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	var pe *transport.PeerError
	if err := ts[1].Recv(cctx, 0, 10, make([]byte, 1)); !errors.As(err, &pe) || pe.Peer != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline PeerError naming rank 0", err)
	}
	// The tag still works afterwards.
	if err := ts[0].Send(ctx, 1, 10, []byte{7}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1)
	if err := ts[1].Recv(ctx, 0, 10, got); err != nil || got[0] != 7 {
		t.Fatalf("after a cancelled Recv: %v %v", got, err)
	}
}

func TestMessagesAllocateNothingOnceWarm(t *testing.T) {
	ts := New(2)
	ctx := context.Background()
	msg, got := make([]byte, 4096), make([]byte, 4096)
	tag := transport.Tag(0)
	once := func() {
		tag++ // a new tag per round, as collectives use
		if err := ts[0].Send(ctx, 1, tag, msg); err != nil {
			t.Fatal(err)
		}
		if err := ts[1].Recv(ctx, 0, tag, got); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		once()
	}
	if a := alloctest.PerCall(20, 200, 3, once); a >= alloctest.Tolerance {
		t.Fatalf("%v allocations per message, want 0", a)
	}
}
