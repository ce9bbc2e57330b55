package worker

import (
	"context"
	"testing"
	"time"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/obs"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/loopback"
)

// claiming reports the capabilities it is given over a loopback
// transport (whose operations work whatever Caps says).
type claiming struct {
	*loopback.Transport
	caps transport.Caps
}

func (c claiming) Caps() transport.Caps { return c.caps }

type copySink struct{ b []byte }

func (s *copySink) Chunk(off int, b []byte) { copy(s.b[off:], b) }

// The traffic counter reports the Caps of the transport under it (hiding
// them once sent every job's all-reduce down the staging path) and counts
// the bytes of every kind of send and receive.
func TestCountingForwardsCapsAndCountsEveryOperation(t *testing.T) {
	m, err := mesh.New(2, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	caps := transport.Caps{PostedRecv: true, ChunkedRecv: true, BatchedSend: true, Notifies: true, Polls: true}
	lb := loopback.New(2)
	ts := make([]*counting, 2)
	for r := range ts {
		ct, err := countTraffic(claiming{lb[r], caps}, m, r, obs.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		ts[r] = ct.(*counting)
		if got := ct.Caps(); got != caps {
			t.Fatalf("rank %d: caps %+v, want %+v", r, got, caps)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts[0].Send(ctx, 1, 1, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if err := ts[0].SendMulti(ctx, 1, 1, [][]byte{make([]byte, 5), make([]byte, 7)}); err != nil {
		t.Fatal(err)
	}
	if err := ts[0].Send(ctx, 1, 1, []byte("abcdefghijk")); err != nil {
		t.Fatal(err)
	}
	if err := ts[1].Recv(ctx, 0, 1, make([]byte, 3), transport.Soon); err != nil {
		t.Fatal(err)
	}
	if err := ts[1].PostRecv(ctx, 0, 1, make([]byte, 5)).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := ts[1].PostRecv(ctx, 0, 1, make([]byte, 7)).Wait(); err != nil {
		t.Fatal(err)
	}
	sink := &copySink{b: make([]byte, 11)}
	if err := ts[1].PostRecvChunks(ctx, 0, 1, 11, sink).Wait(); err != nil || string(sink.b) != "abcdefghijk" {
		t.Fatalf("chunked receive: %v, %q", err, sink.b)
	}
	if got := ts[0].bytes[0][0].Load(); got != 26 {
		t.Errorf("rank 0 sent %d dp bytes, want 26", got)
	}
	if got := ts[1].bytes[1][0].Load(); got != 26 {
		t.Errorf("rank 1 received %d dp bytes, want 26", got)
	}
	_, next := ts[0].PeerFailures()
	ts[1].Close()
	select {
	case <-next:
	case <-ctx.Done():
		t.Fatal("the closed peer's failure was not forwarded")
	}
}
