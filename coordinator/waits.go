package coordinator

import (
	"fmt"
	"sort"
	"strings"
	"time"

	pb "github.com/strand-ml/strand/coordinator/proto"
)

// This file is the coordinator's half of the step watchdog's "who waits on
// whom". Every running rank's heartbeat carries the oldest call it is in
// and the newest sequence number it entered per communicator (worker's
// inflight.go); when the watchdog fires (or a rank is declared dead) the
// coordinator compares them and prints one line per rank:
//
//	rank 2 waits on rank 3 in allreduce group dp seq 41 for 12.3s (rank 3 never entered it)
//	rank 3: no heartbeat for 12.6s (stopped, frozen or unreachable); last seen in allreduce group dp seq 40
//	the waits end at rank 3
//
// The rank waited on is, in order of evidence: members of the call's group
// that never entered it (their newest sequence number for the group is
// older), members whose heartbeats stopped, and else the peer the rank
// itself names (the peer of a send or receive, or of its oldest unfinished
// transport receive).

// waitsLocked describes every running rank's wait at now, one line per
// rank, and a last line naming where the chains of waits end (the ranks
// that wait on nobody); nil when no rank is in a call.
func (s *Server) waitsLocked(now time.Time) []string {
	if s.state == pb.JobState_JOB_STATE_WAITING {
		return nil
	}
	n := len(s.joiners)
	silent := func(r int) (time.Duration, bool) {
		j := s.joiners[r]
		age := now.Sub(j.lastSeen)
		return age, j.state == "dead" || (j.state == "running" && age >= s.cfg.HeartbeatStale)
	}
	on := make([]int, n) // the rank each rank waits on, -1 none
	lines := make([]string, 0, n+1)
	anyWait := false
	for r, j := range s.joiners {
		on[r] = -1
		if age, quiet := silent(r); quiet {
			line := fmt.Sprintf("rank %d: no heartbeat for %.1fs (stopped, frozen or unreachable)", r, age.Seconds())
			if f := j.inFlight; f != nil {
				line += fmt.Sprintf("; last seen in %s group %s seq %d", f.Op, f.Group, f.Seq)
			}
			lines = append(lines, line)
			continue
		}
		if j.state != "running" {
			continue
		}
		f := j.inFlight
		if f == nil {
			lines = append(lines, fmt.Sprintf("rank %d is in no collective (step %d)", r, j.step))
			continue
		}
		anyWait = true
		var missing, quiet []int
		for _, p32 := range f.Ranks {
			p := int(p32)
			if p == r || p < 0 || p >= n {
				continue
			}
			if _, q := silent(p); q {
				quiet = append(quiet, p)
			}
			if seq, ok := s.joiners[p].entered[f.Group]; !ok || seq < f.Seq {
				if s.joiners[p].state == "running" || s.joiners[p].state == "dead" {
					missing = append(missing, p)
				}
			}
		}
		why := ""
		switch {
		case len(missing) > 0:
			on[r] = missing[0]
			why = fmt.Sprintf(" (%s never entered it)", rankList(missing))
		case len(quiet) > 0:
			on[r] = quiet[0]
			why = fmt.Sprintf(" (%s sends no heartbeats)", rankList(quiet))
		case f.Peer >= 0 && int(f.Peer) < n && int(f.Peer) != r:
			on[r] = int(f.Peer)
		}
		// the time in the call when the heartbeat left, plus its age
		d := f.Seconds + now.Sub(j.lastSeen).Seconds()
		who := "an unknown rank"
		if on[r] >= 0 {
			who = fmt.Sprintf("rank %d", on[r])
		}
		lines = append(lines, fmt.Sprintf("rank %d waits on %s in %s group %s seq %d for %.1fs%s", r, who, f.Op, f.Group, f.Seq, d, why))
	}
	if !anyWait {
		return nil
	}
	// Follow each chain of waits to its end: a rank that waits on nobody
	// (silent, or not in a call), or a cycle (every rank in it waits).
	ends, cycle := map[int]bool{}, map[int]bool{}
	for r := range on {
		if on[r] < 0 {
			continue
		}
		seen := map[int]bool{r: true}
		p := on[r]
		for on[p] >= 0 && !seen[p] {
			seen[p] = true
			p = on[p]
		}
		if on[p] < 0 {
			ends[p] = true
			continue
		}
		for q := on[p]; !cycle[q]; q = on[q] { // p is on the cycle
			cycle[q] = true
		}
	}
	if len(ends) > 0 {
		lines = append(lines, "the waits end at "+rankList(sortedKeys(ends)))
	}
	if len(cycle) > 0 {
		lines = append(lines, "the waits go round in a cycle through "+rankList(sortedKeys(cycle))+" (calls issued in different orders, or a lost message)")
	}
	return lines
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// rankList renders ranks as "rank 3" or "ranks 1, 3".
func rankList(rs []int) string {
	if len(rs) == 1 {
		return fmt.Sprintf("rank %d", rs[0])
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprint(r)
	}
	return "ranks " + strings.Join(parts, ", ")
}
