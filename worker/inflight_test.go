package worker

import (
	"context"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/obs"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/loopback"
)

// TestInFlightView: the heartbeat's view is the oldest unfinished call
// (a point-to-point call names its peer, a collective the transport's
// waited-on peer) and the newest sequence number per communicator.
func TestInFlightView(t *testing.T) {
	t0 := time.Now()
	peer := 3
	es := []collective.FlightEntry{
		{Comm: "dp", Ranks: []int{0, 2}, Seq: 7, Op: "allreduce", Start: t0, End: t0.Add(time.Millisecond)},
		{Comm: "dp", Ranks: []int{0, 2}, Seq: 8, Op: "allreduce", Start: t0.Add(2 * time.Second)},
		{Comm: "pp", Ranks: []int{0, 3}, Seq: 4, Op: "recv", Peer: &peer, Start: t0.Add(time.Second)},
		{Comm: "tp", Ranks: []int{0, 1}, Seq: 11, Op: "barrier", Start: t0, End: t0.Add(time.Millisecond)},
	}
	f, entered := inFlight(es, 2, t0.Add(5*time.Second))
	if f == nil || f.Group != "pp" || f.Op != "recv" || f.Seq != 4 || f.Peer != 3 || f.Seconds != 4 || len(f.Ranks) != 2 {
		t.Fatalf("in flight %v, want the pp recv from rank 3 for 4s", f)
	}
	if entered["dp"] != 8 || entered["tp"] != 11 || len(entered) != 2 {
		t.Fatalf("entered %v, want dp 8, tp 11 (no point-to-point)", entered)
	}
	es[2].End = t0.Add(3 * time.Second)
	if f, _ = inFlight(es, 2, t0.Add(5*time.Second)); f == nil || f.Group != "dp" || f.Seq != 8 || f.Peer != 2 {
		t.Fatalf("in flight %v, want dp allreduce 8 waiting on the transport's rank 2", f)
	}
	waiting := 5 // a wait over shared memory, which the transport never saw
	es[1].WaitingOn = &waiting
	if f, _ = inFlight(es, 2, t0.Add(5*time.Second)); f == nil || f.Seq != 8 || f.Peer != 5 {
		t.Fatalf("in flight %v, want dp allreduce 8 waiting on rank 5 (its flight entry)", f)
	}
	es[1].End = t0.Add(3 * time.Second)
	if f, _ = inFlight(es, -1, t0); f != nil {
		t.Fatalf("in flight %v with every call finished", f)
	}
}

// TestCountingNamesWaitedPeer: the counting transport knows which peer a
// blocked receive waits on, and forgets it once the message arrives.
func TestCountingNamesWaitedPeer(t *testing.T) {
	ts := loopback.New(3)
	m := mesh.Mesh{DP: 3, TP: 1, PP: 1}
	ct, err := countTraffic(ts[0], m, 0, obs.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c := countingOf(ct)
	if c == nil || c.waitingOn() != -1 {
		t.Fatalf("counting layer %v, waiting on %d before any receive", c, c.waitingOn())
	}
	done := make(chan error, 1)
	go func() { done <- ct.Recv(context.Background(), 2, transport.Tag(1), make([]byte, 4)) }()
	for end := time.Now().Add(5 * time.Second); c.waitingOn() != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a receive blocked on rank 2 is not seen as waiting on rank 2")
		}
	}
	if err := ts[2].Send(context.Background(), 0, transport.Tag(1), []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w := c.waitingOn(); w != -1 {
		t.Fatalf("still waiting on %d after the message arrived", w)
	}
}
