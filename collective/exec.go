package collective

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strand-ml/strand/transport"
)

// call is one collective call on one rank, from begin to the end of run.
//
// Records are recycled (Comm.freeCalls): run returns its record when the
// call is over, so a steady stream of calls allocates none.
type call struct {
	c       *Comm
	fp      fingerprint
	cx      callCtx         // the call's context (deadline, cancellation)
	ctx     context.Context // &cx, as the interface lanes and transports take
	watch   *parentWatch    // propagates the caller's cancellation, if it can be cancelled
	flight  int             // this call's FlightRecorder entry (-1: none)
	timeout time.Duration
	planFn  func(*Comm, fingerprint) *Plan // builds (or finds) the plan; a method expression needs no allocation
	bufs    [2][]byte
	tag     transport.Tag
	es      int                 // element size in bytes
	recvOpt []transport.RecvOpt // options of the call's receives: nil, or Comm.soon

	peers   [2]int                 // fpPeers' result
	fpOut   [fingerprintLen]byte   // this call's encoded fingerprint
	fpIn    [fingerprintLen]byte   // a neighbour's, being checked
	opening [2 + maxOpening][]byte // sendOpening's batch
	// Inline calls: whether each fpPeers neighbour has had our
	// fingerprint, and whether we have checked its.
	fpSent, fpChecked [2]bool

	// Shared windows (window.go): this call's window call number, if it
	// is one (windowCall), the peers in waiting order, and reduction
	// scratch kept with the record.
	wseq     uint64
	isWin    bool
	peerList []int
	scratch  [][]byte

	errMu   sync.Mutex
	err     error
	blocked [2]atomic.Int64 // per lane (send, recv): global rank of the transport call in progress, or -1
}

// begin assigns the call its sequence number and deadline. It is
// synchronous even for async calls, so issue order defines the sequence.
func (c *Comm) begin(ctx context.Context, fp fingerprint, planFn func(*Comm, fingerprint) *Plan, buf0, buf1 []byte) (*call, error) {
	fp.Group, fp.Rank = c.fpGroup, uint32(c.ranks[c.me])
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil && len(c.dead) > 0 {
		c.broken = c.deadErrLocked()
	}
	if c.broken != nil {
		return nil, fmt.Errorf("%v seq %d: communicator unusable after an earlier failure: %w", fp.Kind, c.seq, c.broken)
	}
	if c.closed {
		return nil, fmt.Errorf("%v seq %d: communicator %q is closed", fp.Kind, c.seq, c.opts.Name)
	}
	fp.Seq = c.seq
	c.seq++
	cl := c.newCallLocked()
	cl.fp, cl.planFn, cl.bufs = fp, planFn, [2][]byte{buf0, buf1}
	cl.tag, cl.es = transport.Tag(c.tags|fp.Seq&tagSeqMask), max(1, fp.DType.Size())
	if fp.DType == 0 {
		cl.es = 1
	}
	cl.fpSent, cl.fpChecked, cl.err, cl.recvOpt = [2]bool{}, [2]bool{}, nil, nil
	if cl.isWin = c.windowCall(fp); cl.isWin {
		cl.wseq = c.wseq
		c.wseq += uint64(c.windowPieces(fp))
	}
	d, ok := ctx.Deadline()
	if ok {
		cl.timeout = time.Until(d)
	} else {
		d, cl.timeout = time.Now().Add(c.opts.Timeout), c.opts.Timeout
	}
	cl.cx.start(ctx, d)
	if ctx.Done() != nil {
		cl.watch = c.watchParent(ctx)
		if err := ctx.Err(); err != nil {
			cl.cx.cancel(err, context.Cause(ctx))
		}
	}
	cl.blocked[0].Store(-1)
	cl.blocked[1].Store(-1)
	c.calls[cl] = struct{}{}
	cl.flight = c.opts.Flight.start(c, fp)
	return cl, nil
}

// maxFreeCalls bounds the recycled call records a communicator keeps
// (about the number of async calls a training step keeps in flight).
const maxFreeCalls = 16

// newCallLocked takes a recycled call record or makes one. Call with c.mu
// held.
func (c *Comm) newCallLocked() *call {
	if n := len(c.freeCalls); n > 0 {
		cl := c.freeCalls[n-1]
		c.freeCalls[n-1] = nil
		c.freeCalls = c.freeCalls[:n-1]
		return cl
	}
	cl := &call{c: c}
	cl.ctx = &cl.cx
	return cl
}

// release ends a call: its context is disarmed, it leaves the set of
// calls in flight (so no watcher can cancel it any more) and its record
// is recycled. Nothing may touch cl afterwards.
func (cl *call) release() {
	c := cl.c
	cl.cx.end()
	c.mu.Lock()
	delete(c.calls, cl)
	if cl.watch != nil {
		cl.watch.calls--
		cl.watch = nil
	}
	cl.planFn, cl.bufs = nil, [2][]byte{}
	if len(c.freeCalls) < maxFreeCalls {
		c.freeCalls = append(c.freeCalls, cl)
	}
	c.mu.Unlock()
}

// cancel aborts the call (its lanes and transport calls see its context
// end) with cause, the reason finish reports; nil means context.Canceled.
func (cl *call) cancel(cause error) { cl.cx.cancel(context.Canceled, cause) }

// progress counts finished steps of one lane; the other lane waits on it.
// Exactly one goroutine waits on a progress (the other lane), so a
// one-slot kick channel is enough to wake it, and waiting allocates
// nothing (a channel per wait was an allocation per segment).
type progress struct {
	n    atomic.Int64
	kick chan struct{} // holds a token after an add the waiter may not have seen
}

func newProgress() *progress { return &progress{kick: make(chan struct{}, 1)} }

func (p *progress) add() {
	p.n.Add(1)
	select {
	case p.kick <- struct{}{}:
	default: // a token is already waiting
	}
}

func (p *progress) count() int { return int(p.n.Load()) }

func (p *progress) wait(ctx context.Context, n int) error {
	for int(p.n.Load()) < n {
		select {
		case <-p.kick:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// run executes the plan: local copies, then the send lane (on its own
// goroutine) and the receive lane (on this one) concurrently.
func (cl *call) run() (err error) {
	c := cl.c
	defer func() {
		c.opts.Flight.end(cl.flight, err)
		cl.release()
	}()
	if c.winCapable { // (a group of one is never capable)
		w, err := cl.window()
		if err != nil {
			cl.fail(err)
			return cl.finish()
		}
		if w != nil {
			cl.logCall(w)
			if cl.isWin {
				cl.runWindow(w)
				return cl.finish()
			}
		}
	}
	plan := cl.planFn(c, cl.fp)
	for _, cp := range plan.Copies {
		copy(cl.bufs[cp.DstBuf][cp.DstOff*cl.es:(cp.DstOff+cp.N)*cl.es], cl.bufs[cp.SrcBuf][cp.SrcOff*cl.es:(cp.SrcOff+cp.N)*cl.es])
	}
	if len(c.ranks) == 1 {
		return nil
	}
	if cl.planBytes(plan) < cl.c.opts.SmallBytes {
		// Latency bound: every receive's message is sent at about the
		// time it is posted, so the transport may poll instead of park.
		cl.recvOpt = c.soon
		cl.runInline(plan)
		return cl.finish()
	}
	// Fingerprints go out before either lane starts, so that a neighbour
	// always gets ours even if this rank fails at once (mismatch).
	cl.fp.encode(cl.fpOut[:])
	for _, p := range cl.fpPeers() {
		if err := cl.xfer(0, p, cl.fpOut[:]); err != nil {
			cl.fail(err)
			return cl.finish()
		}
	}
	if !cl.checkFingerprints() {
		return cl.finish()
	}
	sends, recvs := newProgress(), newProgress()
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl.sendLane(plan, sends, recvs)
	}()
	cl.recvLane(plan, sends, recvs)
	<-done
	return cl.finish()
}

// planBytes is the largest single step of the plan, in bytes.
func (cl *call) planBytes(p *Plan) int {
	m := 0
	for _, s := range p.Sends {
		m = max(m, s.N*cl.es)
	}
	for _, s := range p.Recvs {
		m = max(m, s.N*cl.es)
	}
	return m
}

// runInline runs a small plan on this goroutine alone: it sends whenever
// a send's dependencies are met and otherwise receives. Small sends never
// wait for the peer (they fit the socket buffer, and receivers always
// drain), so this eager order cannot deadlock, and it saves the goroutine
// handoffs that dominate small-message latency.
//
// Fingerprints travel with the data: the fingerprint for a neighbour the
// plan sends to goes in the same write as the first message to it (at 4
// ranks recursive doubling's partners are the ring neighbours, so no
// fingerprint needs a write of its own), and a neighbour's fingerprint is
// checked just before the first receive from it (or, if there is none,
// right after the opening sends). Data may
// so reach a neighbour before either side has checked the other's
// fingerprint; a mismatching peer fails at its own check and never reads
// it. A rank that finds a mismatch first sends the fingerprints it still
// owes, so that every neighbour sees the mismatch too.
func (cl *call) runInline(plan *Plan) {
	var stage []byte
	defer func() {
		if stage != nil {
			cl.c.putStaging(stage)
		}
	}()
	si, ri := 0, 0
	if !cl.sendOpening(plan, &si) {
		return
	}
	// Neighbours the plan never receives from sent their fingerprints
	// in their openings: check them first (left first, it sends to us
	// first), so that a neighbour that never joins the call is the one a
	// timeout names, not a partner that waits for it.
	peers := cl.fpPeers()
	for i := len(peers) - 1; i >= 0; i-- {
		if !plan.receivesFrom(peers[i]) && !cl.checkFingerprintOf(peers[i]) {
			return
		}
	}
	for si < len(plan.Sends) || ri < len(plan.Recvs) {
		if si < len(plan.Sends) && plan.Sends[si].After <= ri {
			s := plan.Sends[si]
			if err := cl.sendOwingFingerprint(s.Peer, cl.region(s)); err != nil {
				cl.fail(err)
				return
			}
			si++
			continue
		}
		if ri >= len(plan.Recvs) || plan.Recvs[ri].After > si {
			cl.fail(fmt.Errorf("internal error: plan cannot progress at send %d, recv %d", si, ri))
			return
		}
		s := plan.Recvs[ri]
		dst := cl.region(s)
		if i := cl.fpIndex(s.Peer); i >= 0 && !cl.fpChecked[i] && cl.c.caps.PostedRecv {
			// The peer's fingerprint comes right before this data (in
			// the same write where the transport batches): post both
			// receives before waiting, so the data lands in staging as
			// it arrives instead of being parked by the transport and
			// copied again. It is used only once the fingerprint
			// matches.
			if stage == nil {
				stage = cl.c.getStaging(cl.planBytes(plan))
			}
			in := stage[:len(dst)]
			g := cl.c.ranks[s.Peer]
			cl.fpChecked[i] = true
			cl.blocked[1].Store(int64(g))
			fpr := cl.c.t.PostRecv(cl.ctx, g, cl.tag, cl.fpIn[:], cl.recvOpt...)
			dr := cl.c.t.PostRecv(cl.ctx, g, cl.tag, in, cl.recvOpt...)
			ok := cl.compareFingerprint(s.Peer, fpr.Wait())
			err := dr.Wait() // returns at once if the mismatch cancelled the call
			if !ok {
				return
			}
			if err != nil {
				cl.fail(err)
				return
			}
			cl.blocked[1].Store(-1)
			if s.Reduce {
				reduceInto(cl.fp.DType, cl.fp.Op, dst, in, s.PeerFirst, s.Final, len(cl.c.ranks))
			} else {
				copy(dst, in)
			}
			ri++
			continue
		}
		if !cl.checkFingerprintOf(s.Peer) {
			return
		}
		if !s.Reduce {
			if err := cl.xfer(1, s.Peer, dst); err != nil {
				cl.fail(err)
				return
			}
		} else {
			if stage == nil {
				stage = cl.c.getStaging(cl.planBytes(plan))
			}
			in := stage[:len(dst)]
			if err := cl.xfer(1, s.Peer, in); err != nil {
				cl.fail(err)
				return
			}
			reduceInto(cl.fp.DType, cl.fp.Op, dst, in, s.PeerFirst, s.Final, len(cl.c.ranks))
		}
		ri++
	}
}

// fpIndex is peer's index in fpPeers' result, or -1 if it is not a
// neighbour that exchanges fingerprints with this rank.
func (cl *call) fpIndex(peer int) int {
	for i, p := range cl.fpPeers() {
		if p == peer {
			return i
		}
	}
	return -1
}

// sendOwingFingerprint sends b to peer, preceded in the same write by this
// call's fingerprint if peer is a neighbour that has not had it yet.
func (cl *call) sendOwingFingerprint(peer int, b []byte) error {
	i := cl.fpIndex(peer)
	if i < 0 || cl.fpSent[i] {
		return cl.xfer(0, peer, b)
	}
	cl.fpSent[i] = true
	bufs := append(cl.opening[:0], cl.fpOut[:], b)
	g := cl.c.ranks[peer]
	cl.blocked[0].Store(int64(g))
	if err := cl.c.t.SendMulti(cl.ctx, g, cl.tag, bufs); err != nil {
		return err
	}
	cl.blocked[0].Store(-1)
	return nil
}

// checkFingerprintOf receives and compares peer's fingerprint, once, if
// peer is a neighbour; it reports false (the call failed) on a mismatch
// or a transport error.
func (cl *call) checkFingerprintOf(peer int) bool {
	i := cl.fpIndex(peer)
	if i < 0 || cl.fpChecked[i] {
		return true
	}
	cl.fpChecked[i] = true
	return cl.compareFingerprint(peer, cl.xfer(1, peer, cl.fpIn[:]))
}

// compareFingerprint compares peer's fingerprint, received into cl.fpIn
// with error err, with this call's; it reports false (the call failed)
// on a mismatch or a receive error.
func (cl *call) compareFingerprint(peer int, err error) bool {
	c := cl.c
	if err != nil {
		cl.fail(err)
		return false
	}
	if theirs := decodeFingerprint(cl.fpIn[:]); !cl.fp.sameCall(theirs) {
		// The neighbours still owed our fingerprint must see the
		// mismatch too: best effort, the call is failing anyway.
		for j, p := range cl.fpPeers() {
			if !cl.fpSent[j] {
				cl.fpSent[j] = true
				_ = cl.xfer(0, p, cl.fpOut[:])
			}
		}
		cl.fail(&MismatchError{Rank: c.ranks[c.me], PeerRank: c.ranks[peer], Call: cl.fp.String(), PeerCall: theirs.String(), SameGroup: theirs.Group == cl.fp.Group})
		return false
	}
	return true
}

// sendOpening sends what the plan can send before any receive: the
// fingerprints for neighbours the plan never sends to, and the plan's
// first sends that depend on nothing, each neighbour's preceded by its
// fingerprint. Consecutive messages to one peer go in one SendMulti (with
// transport.Caps.BatchedSend the fingerprint and the data of a small
// all-reduce then cost one system call and one wake-up at the peer).
func (cl *call) sendOpening(plan *Plan, si *int) bool {
	fpb := cl.fpOut[:]
	cl.fp.encode(fpb)
	type msg struct {
		peer int
		buf  []byte
	}
	var arr [2 + maxOpening]msg
	msgs := arr[:0]
	for i, p := range cl.fpPeers() {
		if !plan.sendsTo(p) {
			msgs = append(msgs, msg{p, fpb})
			cl.fpSent[i] = true
		}
	}
	for *si < len(plan.Sends) && plan.Sends[*si].After == 0 && len(msgs)+2 <= len(arr) {
		s := plan.Sends[*si]
		if i := cl.fpIndex(s.Peer); i >= 0 && !cl.fpSent[i] {
			msgs = append(msgs, msg{s.Peer, fpb})
			cl.fpSent[i] = true
		}
		msgs = append(msgs, msg{s.Peer, cl.region(s)})
		*si++
	}
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j].peer == msgs[i].peer {
			j++
		}
		var err error
		if j-i == 1 {
			err = cl.xfer(0, msgs[i].peer, msgs[i].buf)
		} else {
			bufs := cl.opening[:0]
			for _, m := range msgs[i:j] {
				bufs = append(bufs, m.buf)
			}
			g := cl.c.ranks[msgs[i].peer]
			cl.blocked[0].Store(int64(g))
			if err = cl.c.t.SendMulti(cl.ctx, g, cl.tag, bufs); err == nil {
				cl.blocked[0].Store(-1)
			}
		}
		if err != nil {
			cl.fail(err)
			return false
		}
		i = j
	}
	return true
}

// maxOpening bounds how many dependency-free first sends sendOpening
// batches with the fingerprints; the rest go out in the plan's order.
const maxOpening = 6

// checkFingerprints receives both neighbours' fingerprints (left first:
// it sends to us first) and compares them with ours.
func (cl *call) checkFingerprints() bool {
	c := cl.c
	peers := cl.fpPeers()
	if len(peers) == 2 {
		peers[0], peers[1] = peers[1], peers[0]
	}
	fpb := cl.fpIn[:]
	for _, p := range peers {
		if err := cl.xfer(1, p, fpb); err != nil {
			cl.fail(err)
			return false
		}
		if theirs := decodeFingerprint(fpb); !cl.fp.sameCall(theirs) {
			cl.fail(&MismatchError{Rank: c.ranks[c.me], PeerRank: c.ranks[p], Call: cl.fp.String(), PeerCall: theirs.String(), SameGroup: theirs.Group == cl.fp.Group})
			return false
		}
	}
	return true
}

// fpPeers are the group ranks that exchange fingerprints: both ring
// neighbours. If every pair of neighbours agrees, everyone agrees.
//
// It fills the call's own array, so the hot path does not allocate.
func (cl *call) fpPeers() []int {
	n, me := len(cl.c.ranks), cl.c.me
	if n == 2 {
		cl.peers[0] = 1 - me
		return cl.peers[:1]
	}
	cl.peers[0], cl.peers[1] = mod(me+1, n), mod(me-1, n)
	return cl.peers[:2]
}

func (cl *call) fail(err error) {
	cl.errMu.Lock()
	if cl.err == nil {
		cl.err = err
	}
	cl.errMu.Unlock()
	cl.cancel(err)
}

func (cl *call) region(s Step) []byte { return cl.bufs[s.Buf][s.Off*cl.es : (s.Off+s.N)*cl.es] }

func (cl *call) sendLane(plan *Plan, sends, recvs *progress) {
	for _, s := range plan.Sends {
		if s.After > 0 {
			if err := recvs.wait(cl.ctx, s.After); err != nil {
				cl.fail(err)
				return
			}
		}
		if err := cl.xfer(0, s.Peer, cl.region(s)); err != nil {
			cl.fail(err)
			return
		}
		sends.add()
	}
}

// reduceSink combines the chunks of one incoming segment into its
// destination region as they arrive (transport.ChunkSink). Chunks cover
// disjoint ranges, so concurrent calls for one segment are safe, and each
// element is combined exactly once in the plan's fixed order, so the
// result does not depend on how the transport cut the message.
type reduceSink struct {
	dt               DType
	op               Op
	dst              []byte
	peerFirst, final bool
	n                int
}

func (s *reduceSink) Chunk(off int, b []byte) {
	reduceInto(s.dt, s.op, s.dst[off:off+len(b)], b, s.peerFirst, s.final, s.n)
}

// chunkPostDepth bounds how many receives recvLane keeps posted.
const chunkPostDepth = 64

// postDepth is how many receives recvLane keeps posted over c's
// transport. With transport.Caps.ChunkedRecv no staging buffer limits the
// window, so every receive of the plan whose region is free is posted
// ahead and nothing is parked and copied. Without it every reducing
// receive in the window holds a segment-sized staging buffer: 8 posted
// (what the posted executor this one replaced kept, with 6 staging
// buffers) bounds that memory. Without transport.Caps.PostedRecv a posted
// receive only runs when waited for, so posting further ahead than the
// next one would gain nothing and only hold buffers.
func (c *Comm) postDepth() int {
	switch {
	case c.caps.ChunkedRecv:
		return chunkPostDepth
	case c.caps.PostedRecv:
		return 8
	}
	return 2
}

// recvLane receives the plan's steps in order: it posts up to
// postDepth receives ahead (into place, or for reducing steps as chunked
// receives that combine each chunk into place), waits for the oldest and
// slides the window, all on this goroutine. Over a transport with
// transport.Caps.ChunkedRecv a reducing step's segment is combined chunk
// by chunk as it arrives (by the transport's reader, while the chunk is in
// cache; over shared memory straight out of the peer's ring); elsewhere
// the transport stages it and it is combined when waited for.
func (cl *call) recvLane(plan *Plan, sends, recvs *progress) {
	c := cl.c
	var sinks [chunkPostDepth]reduceSink
	var window [chunkPostDepth]transport.PostedRecv
	depth := c.postDepth()
	R, n, next := plan.Recvs, len(c.ranks), 0
	done := 0
	// Every posted receive is waited for before returning, so that no
	// buffer is written after this call ends.
	defer func() {
		for ; done < next; done++ {
			_ = window[done%chunkPostDepth].Wait()
		}
	}()
	for done < len(R) {
		for next < len(R) && next-done < depth {
			s := R[next]
			if s.Fence && next > done {
				break // post it once every earlier receive is done
			}
			if s.After > sends.count() {
				if next > done {
					break // post it later; first finish what is posted
				}
				if err := sends.wait(cl.ctx, s.After); err != nil {
					cl.fail(err)
					return
				}
			}
			dst := cl.region(s)
			g := c.ranks[s.Peer]
			if s.Reduce {
				sk := &sinks[next%chunkPostDepth]
				*sk = reduceSink{dt: cl.fp.DType, op: cl.fp.Op, dst: dst, peerFirst: s.PeerFirst, final: s.Final, n: n}
				window[next%chunkPostDepth] = c.t.PostRecvChunks(cl.ctx, g, cl.tag, len(dst), sk)
			} else {
				window[next%chunkPostDepth] = c.t.PostRecv(cl.ctx, g, cl.tag, dst)
			}
			next++
		}
		s := R[done]
		cl.blocked[1].Store(int64(c.ranks[s.Peer]))
		err := window[done%chunkPostDepth].Wait()
		done++
		if err != nil {
			cl.fail(err)
			return
		}
		cl.blocked[1].Store(-1)
		recvs.add()
	}
}

// xfer runs one transport call for a lane (0 send, 1 recv), remembering
// whom the lane waits for in case the deadline strikes.
func (cl *call) xfer(lane, peer int, b []byte) error {
	g := cl.c.ranks[peer]
	cl.blocked[lane].Store(int64(g))
	var err error
	if lane == 0 {
		err = cl.c.t.Send(cl.ctx, g, cl.tag, b)
	} else {
		err = cl.c.t.Recv(cl.ctx, g, cl.tag, b, cl.recvOpt...)
	}
	if err == nil {
		cl.blocked[lane].Store(-1)
	}
	return err
}

// finish turns the first lane error into the call's error, naming the
// culprit: a dead member if one was reported, else on timeout the ranks
// the lanes were waiting for.
func (cl *call) finish() error {
	cl.errMu.Lock()
	err := cl.err
	cl.errMu.Unlock()
	if err == nil {
		return nil
	}
	cause := cl.cx.Cause()
	c := cl.c
	if errors.Is(err, transport.ErrPeerLeft) {
		c.awaitCulprit(cl.ctx)
	}
	c.noteFailures()
	c.mu.Lock()
	var dead *RankFailedError
	if len(c.dead) > 0 {
		dead = c.deadErrLocked()
	}
	c.mu.Unlock()
	var rf *RankFailedError
	switch {
	case errors.As(cause, &rf):
		err = rf
	case dead != nil: // a member died; whatever this lane saw follows from that
		err = fmt.Errorf("%w (this rank saw: %v)", dead, err)
	case errors.Is(err, context.DeadlineExceeded):
		var waiting []int
		for i := range cl.blocked {
			if g := int(cl.blocked[i].Load()); g >= 0 && !slices.Contains(waiting, g) {
				waiting = append(waiting, g)
			}
		}
		slices.Sort(waiting)
		err = fmt.Errorf("timed out after %v waiting for rank(s) %v: %w", cl.timeout.Round(time.Millisecond), waiting, err)
	}
	err = fmt.Errorf("%v seq %d: %w", cl.fp.Kind, cl.fp.Seq, err)
	c.mu.Lock()
	if c.broken == nil {
		c.broken = err
	}
	c.mu.Unlock()
	return err
}

// leftGrace bounds how long a call that lost a partner to a clean exit
// waits to hear which rank's failure made the partner leave.
const leftGrace = time.Second

// awaitCulprit waits (at most leftGrace, and not past ctx's deadline) for
// the transport to announce a failed group member. A partner that says
// goodbye in the middle of a collective has almost always given up because
// another rank died; the reset of that rank's own connection to us may
// arrive a moment after the goodbye, and the error should name it.
func (c *Comm) awaitCulprit(ctx context.Context) {
	if !c.caps.Notifies {
		return
	}
	wait := leftGrace
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	if wait <= 0 {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		failed, next := c.t.PeerFailures()
		for _, pe := range failed {
			if slices.Contains(c.ranks, pe.Peer) {
				return
			}
		}
		select {
		case <-next:
		case <-timer.C:
			return
		case <-c.stop:
			return
		}
	}
}

func (c *Comm) getStaging(n int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range c.staging {
		if cap(b) >= n {
			c.staging = append(c.staging[:i], c.staging[i+1:]...)
			return b[:n]
		}
	}
	return make([]byte, n)
}

func (c *Comm) putStaging(b []byte) {
	c.mu.Lock()
	if len(c.staging) < 8 {
		c.staging = append(c.staging, b[:cap(b)])
	}
	c.mu.Unlock()
}
