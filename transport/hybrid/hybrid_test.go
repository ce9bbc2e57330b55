package hybrid

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/loopback"
)

// Routes must cover every peer exactly once; messages go over the route
// of their peer; chunked receives are offered only when every route has
// them natively (loopback has none), the other capabilities always.
func TestRoutes(t *testing.T) {
	a, b := loopback.New(3), loopback.New(3)
	if _, err := New(0, 3, Route{"a", a[0], []int{1}}); err == nil || !strings.Contains(err.Error(), "no route to rank 2") {
		t.Errorf("missing route: %v", err)
	}
	if _, err := New(0, 3, Route{"a", a[0], []int{1, 2}}, Route{"b", b[0], []int{2}}); err == nil || !strings.Contains(err.Error(), "routed through both") {
		t.Errorf("double route: %v", err)
	}
	if _, err := New(0, 3, Route{"a", a[1], []int{1, 2}}); err == nil {
		t.Error("a route of another rank was accepted")
	}
	hs := make([]transport.Transport, 3)
	for r := range 3 {
		var err error
		// Peer 1 and 2 of rank 0 over different worlds; the others over a.
		routes := []Route{{"a", a[r], nil}, {"b", b[r], nil}}
		switch r {
		case 0:
			routes[0].Peers, routes[1].Peers = []int{1}, []int{2}
		case 1:
			routes[0].Peers, routes[1].Peers = []int{0, 2}, nil
		case 2:
			routes[0].Peers, routes[1].Peers = []int{1}, []int{0}
		}
		if hs[r], err = New(r, 3, routes...); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := hs[0].(transport.ChunkPoster); ok {
		t.Error("chunked receives offered over loopback routes")
	}
	for _, h := range hs {
		if _, ok := h.(transport.RecvPoster); !ok {
			t.Errorf("%T is no RecvPoster", h)
		}
	}
	if got := hs[0].(*Transport).RouteOf(2); got != "b" {
		t.Errorf("route to 2: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range []int{1, 2} {
		if err := transport.SendMultiOn(hs[0], ctx, p, 7, [][]byte{[]byte("ab"), []byte("cd")}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		pr := hs[p].(transport.RecvPoster).PostRecv(ctx, 0, 7, buf)
		if err := pr.Wait(); err != nil || string(buf) != "ab" {
			t.Fatalf("peer %d: %v %q", p, err, buf)
		}
		if err := hs[p].Recv(ctx, 0, 7, buf); err != nil || string(buf) != "cd" {
			t.Fatalf("peer %d: %v %q", p, err, buf)
		}
	}
	// A crash of rank 2's "b" world is announced to rank 0.
	_, next := hs[0].(transport.FailureNotifier).PeerFailures()
	b[2].Close()
	select {
	case <-next:
	case <-ctx.Done():
		t.Fatal("no failure announced")
	}
	if f, _ := hs[0].(transport.FailureNotifier).PeerFailures(); len(f) != 1 || f[0].Peer != 2 {
		t.Fatalf("failures %v", f)
	}
	for _, h := range hs {
		h.Close()
	}
}
