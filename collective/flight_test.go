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
