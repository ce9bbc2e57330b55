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
// of their peer, whichever operation carries them; the hybrid's Caps are
// what every route has natively (loopback: only failure notification).
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
	if got, want := hs[0].Caps(), (transport.Caps{Notifies: true}); got != want {
		t.Errorf("caps over loopback routes %+v, want %+v", got, want)
	}
	if got := hs[0].(*Transport).RouteOf(2); got != "b" {
		t.Errorf("route to 2: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range []int{1, 2} {
		if err := hs[0].SendMulti(ctx, p, 7, [][]byte{[]byte("ab"), []byte("cd"), []byte("efgh")}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		pr := hs[p].PostRecv(ctx, 0, 7, buf)
		if err := pr.Wait(); err != nil || string(buf) != "ab" {
			t.Fatalf("peer %d: %v %q", p, err, buf)
		}
		if err := hs[p].Recv(ctx, 0, 7, buf, transport.Soon); err != nil || string(buf) != "cd" {
			t.Fatalf("peer %d: %v %q", p, err, buf)
		}
		var sink bytesSink
		sink.b = make([]byte, 4)
		if err := hs[p].PostRecvChunks(ctx, 0, 7, 4, &sink).Wait(); err != nil || string(sink.b) != "efgh" {
			t.Fatalf("peer %d: chunked: %v %q", p, err, sink.b)
		}
	}
	// A crash of rank 2's "b" world is announced to rank 0.
	_, next := hs[0].PeerFailures()
	b[2].Close()
	select {
	case <-next:
	case <-ctx.Done():
		t.Fatal("no failure announced")
	}
	if f, _ := hs[0].PeerFailures(); len(f) != 1 || f[0].Peer != 2 {
		t.Fatalf("failures %v", f)
	}
	for _, h := range hs {
		h.Close()
	}
}

type bytesSink struct{ b []byte }

func (s *bytesSink) Chunk(off int, b []byte) { copy(s.b[off:], b) }

// claiming reports the capabilities it is given over a loopback transport
// (only Caps is read here).
type claiming struct {
	*loopback.Transport
	caps transport.Caps
}

func (c claiming) Caps() transport.Caps { return c.caps }

// A hybrid's Caps: a capability every route has natively, failure
// notification if any route has it.
func TestCapsAreWhatEveryRouteHas(t *testing.T) {
	all := transport.Caps{PostedRecv: true, ChunkedRecv: true, BatchedSend: true, Notifies: true, Polls: true}
	some := transport.Caps{PostedRecv: true, BatchedSend: true}
	for _, c := range []struct {
		a, b, want transport.Caps
	}{
		{all, all, all},
		{all, some, transport.Caps{PostedRecv: true, BatchedSend: true, Notifies: true}},
		{some, some, some},
	} {
		a, b := loopback.New(3), loopback.New(3)
		h, err := New(0, 3, Route{"a", claiming{a[0], c.a}, []int{1}}, Route{"b", claiming{b[0], c.b}, []int{2}})
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Caps(); got != c.want {
			t.Errorf("routes %+v and %+v: caps %+v, want %+v", c.a, c.b, got, c.want)
		}
		h.Close()
	}
}
