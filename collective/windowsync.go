package collective

import (
	"errors"
	"time"

	"github.com/strand-ml/strand/transport"
)

// How window calls meet (window.go): a rank claims its slot once every
// member has read the slot's previous occupant, publishes it with a stamp
// and the call's fingerprint beside it, and waits for the peers' stamps;
// while it waits, the peers' call logs tell whether one of them is in
// another call (a mismatch), and their regions' state whether one has
// left. The waits are paced by a spinner.

// claimSlot waits until slot ws%winSlots of window call ws is free: its
// previous occupant has been read everywhere, here too (an async call of
// this rank may still be reducing it). It reports false if the call failed.
func (cl *call) claimSlot(w *window, ws uint64) bool {
	if ws < winSlots {
		return true
	}
	c := cl.c
	n, me := len(c.ranks), c.me
	s := int(ws % winSlots)
	sp := spinner{busyFor: w.busy}
	need := ws - winSlots + 1
	for i := range n {
		p := (me + i) % n
		sp.reset()
		for w.done(p, s).Load() < need {
			if !cl.spin(&sp, p, w) {
				return false
			}
		}
	}
	return true
}

// publish stamps this rank's slot for window call ws (its data is in
// place) and waits until every peer's is stamped, with this call's
// fingerprint beside the stamp. It reports false if the call failed.
func (cl *call) publish(w *window, ws uint64) bool {
	c := cl.c
	s := int(ws % winSlots)
	copy(w.stampFP(c.me, s), cl.fpOut[:])
	w.stamp(c.me, s).Store(ws + 1)
	// Every peer's data, neighbours first (so a mismatch names one).
	// While waiting, the peer's call log tells whether it is in another
	// call (spin's slow path); once its stamp is there, the fingerprint
	// beside it must be this call's.
	sp := spinner{busyFor: w.busy}
	var fp [fingerprintLen]byte
	for _, p := range cl.winPeers() {
		sp.reset()
		for w.stamp(p, s).Load() != ws+1 {
			if !cl.spinLog(&sp, p, w, true) {
				return false
			}
		}
		copy(fp[:], w.stampFP(p, s))
		if theirs := decodeFingerprint(fp[:]); !cl.fp.sameCall(theirs) {
			cl.mismatch(w, p, theirs)
			return false
		}
	}
	cl.blocked[1].Store(-1)
	return true
}

// winPeers lists the other group ranks, ring neighbours first.
func (cl *call) winPeers() []int {
	c := cl.c
	n, me := len(c.ranks), c.me
	out := cl.peerList[:0]
	for _, p := range cl.fpPeers() {
		out = append(out, p)
	}
	for i := 2; i < n-1; i++ {
		out = append(out, (me+i)%n)
	}
	cl.peerList = out
	return out
}

// checkLog compares peer p's logged call at this call's sequence number
// with this call, once it is there; it reports false (the call failed)
// on a mismatch.
func (cl *call) checkLog(w *window, p int) bool {
	seq := cl.fp.Seq
	if w.logSeq(p, seq).Load() != seq+1 {
		return true // not there yet (or long overwritten: p is far ahead)
	}
	var b [fingerprintLen]byte
	copy(b[:], w.logFP(p, seq))
	if w.logSeq(p, seq).Load() != seq+1 {
		return true // overwritten while read
	}
	theirs := decodeFingerprint(b[:])
	if cl.fp.sameCall(theirs) {
		return true
	}
	cl.mismatch(w, p, theirs)
	return false
}

// mismatch fails the call: peer p made another call (theirs). Ring
// neighbours whose call exchanges messages wait for this call's
// fingerprint, as the message path sends it; they get it, so that they
// see the mismatch at once too.
func (cl *call) mismatch(w *window, p int, theirs fingerprint) {
	c, seq := cl.c, cl.fp.Seq
	var b [fingerprintLen]byte
	for _, q := range cl.fpPeers() {
		if w.logSeq(q, seq).Load() != seq+1 {
			continue
		}
		copy(b[:], w.logFP(q, seq))
		if !c.windowCall(decodeFingerprint(b[:])) {
			_ = cl.xfer(0, q, cl.fpOut[:])
		}
	}
	cl.fail(&MismatchError{Rank: c.ranks[c.me], PeerRank: c.ranks[p], Call: cl.fp.String(), PeerCall: theirs.String(), SameGroup: theirs.Group == cl.fp.Group})
}

// spinner paces a wait for a peer's word: a short busy spin (the peer is
// running and about to write), then yielding the core (ranks may
// outnumber cores, and the peer may be waiting for this one), then
// sleeping in growing steps (the peer is busy elsewhere, perhaps for
// long). Polling costs the peer nothing: no doorbell, no system call.
type spinner struct {
	busyFor time.Duration
	n       int
	busy    bool // still in the busy phase
	start   time.Time
	nap     time.Duration
}

const (
	spinBusy  = 2 * time.Microsecond
	spinYield = time.Millisecond
	maxNap    = 200 * time.Microsecond
)

func (sp *spinner) reset() { sp.n = 0 }

// spin waits a little for peer p (blocked[1] names it if the deadline
// strikes); it reports false once the call has ended (failed, cancelled
// or timed out).
func (cl *call) spin(sp *spinner, p int, w *window) bool { return cl.spinLog(sp, p, w, false) }

// spinLog is spin that, with log, also checks p's call log in its slow
// path: a peer in another call never stamps this one's slot. Every wait
// checks there whether p closed its transport: nothing else would tell.
func (cl *call) spinLog(sp *spinner, p int, w *window, log bool) bool {
	sp.n++
	if sp.n&63 != 0 && (sp.n < 64 || sp.busy) && sp.busyFor > 0 {
		return true // busy: the context, the clock and the log every 64 polls
	}
	if sp.n == 1 && sp.busyFor == 0 || sp.n == 64 && sp.busyFor > 0 { // the wait's first slow pass
		cl.blocked[1].Store(int64(cl.c.ranks[p]))
		cl.c.opts.Flight.waiting(cl.flight, cl.c.ranks[p]) // for the step watchdog
		sp.start, sp.busy, sp.nap = time.Now(), true, 0
	}
	select {
	case <-cl.cx.done:
		cl.fail(cl.ctx.Err())
		return false
	default:
	}
	if err := w.gone(p); err != nil {
		if !errors.Is(err, transport.ErrPeerLeft) { // a crash, as the transport would announce it
			err = &RankFailedError{Ranks: []int{cl.c.ranks[p]}, Err: err}
		} // a goodbye: finish waits a moment to name the rank whose failure made p leave
		cl.fail(err)
		return false
	}
	if log && !cl.checkLog(w, p) {
		return false
	}
	switch el := time.Since(sp.start); {
	case el < sp.busyFor:
	case el < spinYield:
		sp.busy = false
		transport.Yield()
	default:
		sp.busy = false
		sp.nap = min(max(2*sp.nap, 20*time.Microsecond), maxNap)
		time.Sleep(sp.nap)
	}
	return true
}
