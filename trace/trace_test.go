package trace

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRecordMergeAndOverlap(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	path := filepath.Join(dir, "trace.json")
	for rank := 0; rank < 2; rank++ {
		r := New(rank, start)
		t0 := start.Add(time.Millisecond)
		r.Add("backward", "compute", LaneCompute, t0, t0.Add(4*time.Millisecond), nil)
		r.Add("allreduce", "comm", LaneComm, t0.Add(3*time.Millisecond), t0.Add(6*time.Millisecond), map[string]any{"bytes": 10})
		if err := r.WriteFile(PartPath(path, rank)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Merge(path, 2); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f file
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if got := Overlap(f.TraceEvents, "allreduce", "backward"); got < 1999 || got > 2001 {
		t.Fatalf("overlap %g us, want 2000 (1 ms per rank)", got)
	}
	if _, err := os.Stat(PartPath(path, 0)); !os.IsNotExist(err) {
		t.Fatal("part file left behind")
	}
	var nilRec *Recorder
	nilRec.Begin("x", "y", 0, nil)() // a nil recorder is a no-op
}
