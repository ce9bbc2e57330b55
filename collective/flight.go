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
	// Peer is the other global rank of a point-to-point call (Op "send"
	// or "recv"; Seq counts this rank's calls in that direction with that
	// peer); nil for collectives.
	Peer *int `json:"peer,omitempty"`
	// WaitingOn is the global rank a collective over shared windows
	// (window.go) was last seen waiting for, a wait the transport never
	// sees; nil otherwise.
	WaitingOn *int `json:"waiting_on,omitempty"`
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

// startP2P records a point-to-point call: op "send" or "recv" with the
// global rank peer, the seq-th in that direction between the two.
func (f *FlightRecorder) startP2P(c *Comm, op string, peer int, seq uint64, buf Buffer) int {
	if f == nil {
		return -1
	}
	dt, n, _ := view(buf)
	e := FlightEntry{Comm: c.opts.Name, Ranks: c.ranks, Seq: seq, Op: op, Count: uint64(n), Start: time.Now(), Peer: &peer}
	if dt != 0 {
		e.DType = dt.String()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e.ID = f.next
	f.next++
	f.entries[e.ID%len(f.entries)] = e
	return e.ID
}

// waiting notes that call id waits for global rank peer (a window wait
// past its first polls).
func (f *FlightRecorder) waiting(id, peer int) {
	if f == nil || id < 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := &f.entries[id%len(f.entries)]; e.ID == id {
		w := peer // allocated here, not at every call's entry
		e.WaitingOn = &w
	}
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
			if e.Peer != nil {
				continue // point-to-point: diagnosed per channel below
			}
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
				if e.Peer == nil && e.Comm == k.comm && fmt.Sprint(e.Ranks) == k.ranks && e.Seq == seq {
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
	diagnoseP2P(&b, records)
	return b.String()
}

// diagnoseP2P describes every point-to-point channel (communicator,
// sender -> receiver) from the newest send on the sender and the newest
// receive on the receiver: a call still in flight is a rank waiting on
// the other, named with how far the other got.
func diagnoseP2P(b *strings.Builder, records map[int][]FlightEntry) {
	type channel struct {
		comm     string
		from, to int
	}
	newest := map[channel]*[2]*FlightEntry{} // [0] the sender's send, [1] the receiver's recv
	for r, es := range records {
		for i := range es {
			e := &es[i]
			if e.Peer == nil {
				continue
			}
			ch, side := channel{e.Comm, r, *e.Peer}, 0
			if e.Op == "recv" {
				ch, side = channel{e.Comm, *e.Peer, r}, 1
			}
			pair := newest[ch]
			if pair == nil {
				pair = &[2]*FlightEntry{}
				newest[ch] = pair
			}
			if pair[side] == nil || e.Seq >= pair[side].Seq {
				pair[side] = e
			}
		}
	}
	chans := make([]channel, 0, len(newest))
	for ch := range newest {
		chans = append(chans, ch)
	}
	sort.Slice(chans, func(i, j int) bool {
		a, c := chans[i], chans[j]
		if a.comm != c.comm {
			return a.comm < c.comm
		}
		if a.from != c.from {
			return a.from < c.from
		}
		return a.to < c.to
	})
	describe := func(e *FlightEntry, who int, verb string) string {
		switch {
		case e == nil:
			return fmt.Sprintf("rank %d has no %s recorded", who, verb)
		case e.End.IsZero():
			return fmt.Sprintf("rank %d waits in %s seq %d (%d %s) for %.1fs", who, verb, e.Seq, e.Count, e.DType, time.Since(e.Start).Seconds())
		case e.Err != "":
			return fmt.Sprintf("rank %d's %s seq %d failed: %s", who, verb, e.Seq, e.Err)
		}
		return fmt.Sprintf("rank %d finished %s seq %d", who, verb, e.Seq)
	}
	for _, ch := range chans {
		pair := newest[ch]
		send, recv := pair[0], pair[1]
		stuck := (send != nil && (send.End.IsZero() || send.Err != "")) || (recv != nil && (recv.End.IsZero() || recv.Err != ""))
		status := "complete"
		if stuck {
			status = "STUCK"
		}
		if _, ok := records[ch.from]; !ok {
			send = nil
		}
		if _, ok := records[ch.to]; !ok {
			recv = nil
		}
		fmt.Fprintf(b, "%s point-to-point rank %d -> rank %d: %s; %s; %s\n", ch.comm, ch.from, ch.to, status,
			describe(send, ch.from, "send"), describe(recv, ch.to, "recv"))
	}
}
