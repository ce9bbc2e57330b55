package loopback

import (
	"context"
	"errors"
	"testing"
	"time"

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
