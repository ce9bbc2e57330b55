package collective

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// FlightRecorder keeps the last calls of every communicator of a process —
// what each rank last entered and finished — so that when a job hangs or
// aborts, comparing the ranks' records shows at once which collective is
// stuck and which ranks never entered it. Share one recorder among a rank's
// communicators through Options.Flight. A nil recorder records nothing.
type FlightRecorder struct {
	mu      sync.Mutex
	entries []FlightEntry // ring buffer
	next    int           // total entries ever recorded
}

// FlightEntry is one collective call as a rank saw it.
type FlightEntry struct {
	ID    int       `json:"id"`
	Comm  string    `json:"comm"`  // communicator name
	Ranks []int     `json:"ranks"` // the group's global ranks
	Seq   uint64    `json:"seq"`
	Op    string    `json:"op"`
	DType string    `json:"dtype,omitempty"`
	Count uint64    `json:"count"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"` // zero while in flight
	Err   string    `json:"error,omitempty"`
}

// NewFlightRecorder keeps the newest n calls (n <= 0 means 256).
func NewFlightRecorder(n int) *FlightRecorder {
	if n <= 0 {
		n = 256
	}
	return &FlightRecorder{entries: make([]FlightEntry, n)}
}

func (f *FlightRecorder) start(c *Comm, fp fingerprint) int {
	if f == nil {
		return -1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.next
	f.next++
	e := FlightEntry{ID: id, Comm: c.opts.Name, Ranks: c.ranks, Seq: fp.Seq, Op: fp.Kind.String(), Count: fp.Count, Start: time.Now()}
	if fp.DType != 0 {
		e.DType = fp.DType.String()
	}
	f.entries[id%len(f.entries)] = e
	return id
}

func (f *FlightRecorder) end(id int, err error) {
	if f == nil || id < 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := &f.entries[id%len(f.entries)]
	if e.ID != id { // overwritten by newer calls meanwhile
		return
	}
	e.End = time.Now()
	if err != nil {
		e.Err = err.Error()
	}
}

// Entries returns the recorded calls, oldest first.
func (f *FlightRecorder) Entries() []FlightEntry {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(f.next, len(f.entries))
	out := make([]FlightEntry, 0, n)
	for id := f.next - n; id < f.next; id++ {
		out = append(out, f.entries[id%len(f.entries)])
	}
	return out
}

// Diagnose compares the flight records of several ranks (rank -> entries)
// and describes, for every communicator, the newest call: which ranks
// entered it, which finished, and which are missing. world lists every rank
// expected to report; ranks without a record are named too.
func Diagnose(records map[int][]FlightEntry, world []int) string {
	var b strings.Builder
	var silent []int
	for _, r := range world {
		if _, ok := records[r]; !ok {
			silent = append(silent, r)
		}
	}
	if len(silent) > 0 {
		fmt.Fprintf(&b, "no flight record from ranks %v (dead or unreachable)\n", silent)
	}
	type key struct {
		comm  string
		ranks string
	}
	newest := map[key]uint64{}
	groups := map[key][]int{}
	for _, es := range records {
		for _, e := range es {
			k := key{e.Comm, fmt.Sprint(e.Ranks)}
			if s, ok := newest[k]; !ok || e.Seq > s {
				newest[k] = e.Seq
			}
			groups[k] = e.Ranks
		}
	}
	keys := make([]key, 0, len(newest))
	for k := range newest {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].comm != keys[j].comm {
			return keys[i].comm < keys[j].comm
		}
		return keys[i].ranks < keys[j].ranks
	})
	for _, k := range keys {
		seq := newest[k]
		var entered, done, missing []int
		op := ""
		for _, r := range groups[k] {
			state := "missing"
			for _, e := range records[r] {
				if e.Comm == k.comm && fmt.Sprint(e.Ranks) == k.ranks && e.Seq == seq {
					op = fmt.Sprintf("%s of %d %s", e.Op, e.Count, e.DType)
					state = "entered"
					if !e.End.IsZero() && e.Err == "" {
						state = "done"
					}
				}
			}
			switch state {
			case "done":
				done = append(done, r)
			case "entered":
				entered = append(entered, r)
			default:
				missing = append(missing, r)
			}
		}
		status := "complete"
		if len(entered)+len(missing) > 0 {
			status = "STUCK"
		}
		fmt.Fprintf(&b, "%s %s seq %d (%s): %s; finished %v, in the call %v, never entered %v\n",
			k.comm, k.ranks, seq, strings.TrimSpace(op), status, done, entered, missing)
	}
	return b.String()
}
