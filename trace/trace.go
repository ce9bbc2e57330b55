package trace

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/strand-ml/strand/atomicfile"
)

// Event is one Chrome trace event ("X" complete events and "M" metadata).
type Event struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   float64        `json:"ts"` // microseconds since the recorder's start
	Dur  float64        `json:"dur,omitempty"`
	Pid  int            `json:"pid"`
	Tid  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

// Lanes (thread ids) inside a rank's row.
const (
	LaneCompute = 0 // forward, backward, optimizer
	LaneComm    = 1 // point-to-point and collectives
)

// Recorder collects one rank's events. A nil *Recorder records nothing, so
// callers never check whether tracing is on.
type Recorder struct {
	mu     sync.Mutex
	rank   int
	start  time.Time
	events []Event
}

// New starts a recorder for rank; start is the job-wide time origin (use
// the same wall-clock instant on every rank so rows line up).
func New(rank int, start time.Time) *Recorder {
	r := &Recorder{rank: rank, start: start}
	r.events = append(r.events,
		Event{Name: "process_name", Ph: "M", Pid: rank, Args: map[string]any{"name": fmt.Sprintf("rank %d", rank)}},
		Event{Name: "process_sort_index", Ph: "M", Pid: rank, Args: map[string]any{"sort_index": rank}},
		Event{Name: "thread_name", Ph: "M", Pid: rank, Tid: LaneCompute, Args: map[string]any{"name": "compute"}},
		Event{Name: "thread_name", Ph: "M", Pid: rank, Tid: LaneComm, Args: map[string]any{"name": "communication"}},
	)
	return r
}

// Begin opens a span and returns the function that closes it.
func (r *Recorder) Begin(name, cat string, lane int, args map[string]any) func() {
	if r == nil {
		return func() {}
	}
	t0 := time.Now()
	return func() { r.Add(name, cat, lane, t0, time.Now(), args) }
}

// Add records a finished span.
func (r *Recorder) Add(name, cat string, lane int, t0, t1 time.Time, args map[string]any) {
	if r == nil {
		return
	}
	ev := Event{Name: name, Cat: cat, Ph: "X", Pid: r.rank, Tid: lane,
		Ts: float64(t0.Sub(r.start).Nanoseconds()) / 1e3, Dur: float64(t1.Sub(t0).Nanoseconds()) / 1e3, Args: args}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// Events returns a copy of the recorded events.
func (r *Recorder) Events() []Event {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

type file struct {
	TraceEvents     []Event `json:"traceEvents"`
	DisplayTimeUnit string  `json:"displayTimeUnit"`
}

// WriteFile writes the rank's events as a Chrome trace file.
func (r *Recorder) WriteFile(path string) error {
	raw, err := json.Marshal(file{TraceEvents: r.Events(), DisplayTimeUnit: "ms"})
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, raw)
}

// PartPath is where rank writes its part of the trace at path.
func PartPath(path string, rank int) string { return fmt.Sprintf("%s.rank%d", path, rank) }

// Merge joins the parts written for path by ranks [0, world) into path and
// removes the parts.
func Merge(path string, world int) error {
	var all []Event
	for r := 0; r < world; r++ {
		raw, err := os.ReadFile(PartPath(path, r))
		if err != nil {
			return fmt.Errorf("trace merge: %w", err)
		}
		var f file
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("trace merge %s: %w", PartPath(path, r), err)
		}
		all = append(all, f.TraceEvents...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Ph == "M" && all[j].Ph != "M" })
	raw, err := json.Marshal(file{TraceEvents: all, DisplayTimeUnit: "ms"})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(path, raw); err != nil {
		return err
	}
	for r := 0; r < world; r++ {
		os.Remove(PartPath(path, r))
	}
	return nil
}

// Overlap is the total time in which spans named a (on any lane) and spans
// named b overlap within one rank, in microseconds — used to show that
// gradient all-reduce runs during backward.
func Overlap(events []Event, a, b string) float64 {
	var total float64
	for _, x := range events {
		if x.Ph != "X" || x.Name != a {
			continue
		}
		for _, y := range events {
			if y.Ph != "X" || y.Name != b || y.Pid != x.Pid {
				continue
			}
			lo, hi := max(x.Ts, y.Ts), min(x.Ts+x.Dur, y.Ts+y.Dur)
			if hi > lo {
				total += hi - lo
			}
		}
	}
	return total
}
