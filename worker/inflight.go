package worker

import (
	"time"

	"github.com/strand-ml/strand/collective"
	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/transport"
)

// This file is the worker's half of the step watchdog's "who waits on
// whom": every heartbeat carries the oldest call this rank is in (from its
// flight recorder), the peer it waits on (the peer of a send or receive,
// else of its oldest unfinished transport receive, from the counting
// transport) and the newest sequence number it entered per communicator.
// The coordinator compares the ranks' views when steps stop advancing
// (coordinator/waits.go).

// countingOf returns the counting layer of a transport countTraffic built.
func countingOf(t transport.Transport) *counting {
	c, _ := t.(*counting)
	return c
}

// inFlight is this rank's view for a heartbeat at now: its oldest
// unfinished call (nil when none) and the newest sequence number entered
// per communicator name.
func inFlight(entries []collective.FlightEntry, waitingOn int, now time.Time) (*pb.InFlight, map[string]uint64) {
	var oldest *collective.FlightEntry
	entered := map[string]uint64{}
	for i := range entries {
		e := &entries[i]
		if e.Peer == nil && e.Seq >= entered[e.Comm] {
			entered[e.Comm] = e.Seq
		}
		if e.End.IsZero() && (oldest == nil || e.Start.Before(oldest.Start)) {
			oldest = e
		}
	}
	if oldest == nil {
		return nil, entered
	}
	f := &pb.InFlight{Group: oldest.Comm, Op: oldest.Op, Seq: oldest.Seq, Peer: int32(waitingOn), Seconds: now.Sub(oldest.Start).Seconds()}
	if oldest.Peer != nil {
		f.Peer = int32(*oldest.Peer)
	}
	if oldest.WaitingOn != nil { // a wait over shared memory, which no transport call shows
		f.Peer = int32(*oldest.WaitingOn)
	}
	for _, r := range oldest.Ranks {
		f.Ranks = append(f.Ranks, int32(r))
	}
	return f, entered
}

// inFlightView is inFlight for this runtime (nothing before the
// communicators exist).
func (rt *Runtime) inFlightView() (*pb.InFlight, map[string]uint64) {
	rt.mu.Lock()
	t := rt.Transport
	rt.mu.Unlock()
	if rt.Flight == nil || t == nil {
		return nil, nil
	}
	waitingOn := -1
	if c := countingOf(t); c != nil {
		waitingOn = c.waitingOn()
	}
	return inFlight(rt.Flight.Entries(), waitingOn, time.Now())
}
