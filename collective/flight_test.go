package collective

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport/loopback"
)

// TestFlightRecorderNamesTheMissingRank: ranks 0 and 1 enter an all-reduce
// that rank 2 never calls; the records show the call stuck with rank 2
// missing.
func TestFlightRecorderNamesTheMissingRank(t *testing.T) {
	trs := loopback.New(3)
	recs := make([]*FlightRecorder, 3)
	comms := make([]*Comm, 3)
	for r := range comms {
		recs[r] = NewFlightRecorder(8)
		c, err := New(trs[r], []int{0, 1, 2}, Options{Name: "dp", Flight: recs[r], Timeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		comms[r] = c
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ { // one call everybody makes
		wg.Add(1)
		go func() { defer wg.Done(); comms[r].AllReduce(ctx, F32(make([]float32, 5)), Sum) }()
	}
	wg.Wait()
	for r := 0; r < 2; r++ { // rank 2 does not come
		wg.Add(1)
		go func() { defer wg.Done(); comms[r].AllReduce(ctx, F32(make([]float32, 7)), Sum) }()
	}
	wg.Wait()
	records := map[int][]FlightEntry{0: recs[0].Entries(), 1: recs[1].Entries(), 2: recs[2].Entries()}
	if len(records[0]) != 2 || records[0][1].Err == "" || records[0][1].End.IsZero() {
		t.Fatalf("rank 0 record %+v", records[0])
	}
	d := Diagnose(records, []int{0, 1, 2, 3})
	if !strings.Contains(d, "seq 1") || !strings.Contains(d, "STUCK") || !strings.Contains(d, "never entered [2]") || !strings.Contains(d, "ranks [3]") {
		t.Fatalf("diagnosis:\n%s", d)
	}
	var nilRec *FlightRecorder
	if nilRec.Entries() != nil {
		t.Fatal("nil recorder recorded")
	}
}

func TestFlightRecorderRingKeepsNewest(t *testing.T) {
	f := NewFlightRecorder(3)
	c := &Comm{opts: Options{Name: "x"}, ranks: []int{0}}
	for i := 0; i < 5; i++ {
		id := f.start(c, fingerprint{Seq: uint64(i), Kind: kAllReduce})
		f.end(id, nil)
	}
	es := f.Entries()
	if len(es) != 3 || es[0].Seq != 2 || es[2].Seq != 4 {
		t.Fatalf("entries %+v", es)
	}
}

// TestFlightRecorderShowsPointToPoint: pipeline-style sends and receives
// are recorded per peer; the diagnosis of a receive that waits on a
// sender which stopped sending names both ranks and how far each got,
// and the collectives' groups stay "complete".
func TestFlightRecorderShowsPointToPoint(t *testing.T) {
	trs := loopback.New(2)
	recs := []*FlightRecorder{NewFlightRecorder(8), NewFlightRecorder(8)}
	comms := make([]*Comm, 2)
	for r := range comms {
		c, err := New(trs[r], []int{0, 1}, Options{Name: "pp", Flight: recs[r], Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		comms[r] = c
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ { // two activations go through
		h := comms[0].SendAsync(ctx, F32(make([]float32, 6)), 1)
		if err := comms[1].Recv(ctx, F32(make([]float32, 6)), 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// the third receive waits: rank 0 stopped sending
	rctx, cancel := context.WithCancel(ctx)
	h := comms[1].RecvAsync(rctx, F32(make([]float32, 6)), 0)
	time.Sleep(50 * time.Millisecond)
	d := Diagnose(map[int][]FlightEntry{0: recs[0].Entries(), 1: recs[1].Entries()}, []int{0, 1})
	for _, want := range []string{"pp point-to-point rank 0 -> rank 1: STUCK", "rank 0 finished send seq 1", "rank 1 waits in recv seq 2 (6 f32)"} {
		if !strings.Contains(d, want) {
			t.Errorf("diagnosis lacks %q:\n%s", want, d)
		}
	}
	cancel()
	err := h.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "recv seq 2 (rank 1 with rank 0)") {
		t.Fatalf("cancelled receive: %v, want it named with both ranks", err)
	}
	es := recs[1].Entries()
	if last := es[len(es)-1]; last.Op != "recv" || last.Peer == nil || *last.Peer != 0 || last.Err == "" || last.End.IsZero() {
		t.Errorf("rank 1's last entry %+v, want the failed recv from rank 0", last)
	}
}
