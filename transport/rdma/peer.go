package rdma

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// peer is the connection to one remote rank: its QP, its receive and send
// slots, the credit counters and the message matching state.
type peer struct {
	t       *Transport
	rank    int
	qp      verbs.QP
	psn     uint32
	recvMR  verbs.MR // RecvSlots slots of slotSize bytes
	sendMR  verbs.MR // SendSlots slots of slotSize bytes
	slot    int      // slot size
	eager   int      // EagerLimit
	refresh uint64   // send a credit-only message once this many receives are unadvertised

	mu  sync.Mutex
	err error // first fatal error; every later operation fails with it

	// Credits, all cumulative counts since Dial (see the package doc).
	sent       uint64 // our messages that consume a receive at the peer
	limit      uint64 // the peer's largest advertised count of posted receives
	posted     uint64 // receives we have posted for the peer
	advertised uint64 // the largest posted count we have sent

	sqFree    int   // free send queue entries
	freeSlots []int // free eager send slots
	outq      []*outMsg

	tags    map[transport.Tag]*tagQueue
	nextTok uint32
	sends   map[uint32]*sendOp // rendezvous sends, by sender token
	recvs   map[uint32]*recvOp // rendezvous receives, by receiver token
	parked  int64              // bytes in parking buffers holding messages
	// parkPool keeps registered parking buffers by size for reuse: a
	// collective parks the same sizes step after step, and registering
	// and faulting in fresh memory per message is slow.
	parkPool      map[int][]*parked
	parkPoolBytes int64

	// Link watch (link.go): requests posted and not yet completed, when a
	// completion last came (or the first of them was posted), when we
	// last posted anything, and when anything last arrived.
	unacked                    int
	ackedAt, postedAt, heardAt time.Time
}

// outMsg is a message waiting for credit, a send queue entry or a slot.
type outMsg struct {
	hdr       header
	payload   []byte  // kindData: copied into the slot when posted
	write     *sendOp // non-nil: an RDMA WRITE WITH IMM of write's buffer
	posted    bool
	cancelled bool
	done      chan struct{} // kindData only: closed when posted or failed
	err       error
}

// sendOp is a rendezvous Send in progress.
type sendOp struct {
	tok      uint32
	mr       verbs.MR
	tmpMR    bool // mr is a private copy (the Send was cancelled): deregister when done
	posted   bool // the write is posted: the NIC may be reading mr
	n        int
	done     chan struct{}
	err      error
	finished bool
}

// recvOp is a Recv in progress.
type recvOp struct {
	tag      transport.Tag
	buf      []byte
	mr       verbs.MR // registered buf, for sizes above EagerLimit
	park     *parked  // set when this receive fills a parking buffer
	cts      *outMsg  // the clear-to-send that advertised mr
	tmpMR    bool     // buf/mr are a private buffer (the Recv was cancelled)
	done     chan struct{}
	err      error
	finished bool
}

// parked is a large message written into a temporary buffer because it
// arrived before its Recv.
type parked struct {
	buf    []byte
	mr     verbs.MR
	done   bool    // the write has landed
	waiter *recvOp // the Recv matched to it before it landed
}

// tagQueue matches receives with arrivals on one tag, both in order.
type tagQueue struct {
	waiting []*recvOp
	arrived []arrival
}

// arrival is a message that came before its Recv.
type arrival struct {
	rts  bool
	data []byte // eager payload
	n    uint64 // rts: message length
	tok  uint32 // rts: sender token
	park *parked
}

func newPeer(t *Transport, r, sqDepth int) (*peer, error) {
	cfg := &t.cfg
	qp, err := t.pd.CreateQP(verbs.QPCap{MaxSendWR: sqDepth, MaxRecvWR: cfg.RecvSlots, MaxSendSGE: 1, MaxRecvSGE: 1}, t.cq, t.cq)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	p := &peer{t: t, rank: r, qp: qp, slot: t.slotSize, eager: cfg.EagerLimit,
		refresh: uint64(cfg.RecvSlots / 2), sqFree: sqDepth, ackedAt: now, postedAt: now, heardAt: now,
		tags: make(map[transport.Tag]*tagQueue), sends: make(map[uint32]*sendOp), recvs: make(map[uint32]*recvOp)}
	if p.recvMR, err = t.pd.RegMR(make([]byte, cfg.RecvSlots*p.slot), verbs.AccessLocalWrite); err != nil {
		qp.Close()
		return nil, err
	}
	if p.sendMR, err = t.pd.RegMR(make([]byte, cfg.SendSlots*p.slot), verbs.AccessLocalWrite); err != nil {
		qp.Close()
		p.recvMR.Deregister()
		return nil, err
	}
	for i := range cfg.SendSlots {
		p.freeSlots = append(p.freeSlots, i)
	}
	return p, nil
}

func (p *peer) postInitialRecvs() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.t.cfg.RecvSlots {
		if err := p.postRecvLocked(i); err != nil {
			return err
		}
	}
	p.limit = uint64(p.t.cfg.RecvSlots) // the peer posts as many
	p.advertised = p.posted
	return nil
}

func (p *peer) postRecvLocked(slot int) error {
	wr := verbs.RecvWR{ID: wrID(p.rank, wrRecv, uint64(slot)),
		SGL: []verbs.SGE{{Addr: p.recvMR.Addr() + uint64(slot*p.slot), Length: uint32(p.slot), LKey: p.recvMR.LKey()}}}
	if err := p.qp.PostRecv(&wr); err != nil {
		return fmt.Errorf("post receive: %w", err)
	}
	p.posted++
	return nil
}

func (p *peer) destroy() {
	p.qp.Close()
	for _, pool := range p.parkPool {
		for _, pk := range pool {
			pk.mr.Deregister()
		}
	}
	p.recvMR.Deregister()
	p.sendMR.Deregister()
}

func (p *peer) opErr(op string, err error) error {
	return &transport.PeerError{Peer: p.rank, Op: op, Err: err}
}

// tidyLocked forgets an empty tag queue: collectives use a fresh tag per
// call, so kept queues would pile up for the life of the job.
func (p *peer) tidyLocked(t transport.Tag) {
	if q := p.tags[t]; q != nil && len(q.waiting) == 0 && len(q.arrived) == 0 {
		delete(p.tags, t)
	}
}

func (p *peer) tag(t transport.Tag) *tagQueue {
	q := p.tags[t]
	if q == nil {
		q = &tagQueue{}
		p.tags[t] = q
	}
	return q
}

func (p *peer) sendEager(ctx context.Context, tag transport.Tag, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return p.opErr("send", err)
	}
	p.mu.Lock()
	if p.err != nil {
		defer p.mu.Unlock()
		return p.opErr("send", p.err)
	}
	m := &outMsg{hdr: header{kind: kindData, tag: tag, len: uint64(len(buf))}, payload: buf, done: make(chan struct{})}
	p.outq = append(p.outq, m)
	p.pumpLocked()
	posted, err := m.posted, m.err
	p.mu.Unlock()
	if posted {
		return nil // buf was copied into a registered slot
	}
	if err != nil {
		return p.opErr("send", err)
	}
	select {
	case <-m.done:
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case m.posted:
		return nil
	case m.err != nil:
		return p.opErr("send", m.err)
	}
	m.cancelled = true // never posted: the peer knows nothing of it
	return p.opErr("send", fmt.Errorf("tag %#x, %d bytes, waiting for flow-control credit: %w", uint64(tag), len(buf), ctx.Err()))
}

func (p *peer) sendRendezvous(ctx context.Context, tag transport.Tag, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return p.opErr("send", err)
	}
	if len(buf) > math.MaxInt32 {
		return p.opErr("send", fmt.Errorf("message of %d bytes exceeds the 2 GiB limit of one RDMA write", len(buf)))
	}
	mr, release, err := p.t.cache.acquire(buf)
	if err != nil {
		return p.opErr("send", err)
	}
	defer release()
	p.mu.Lock()
	if p.err != nil {
		defer p.mu.Unlock()
		return p.opErr("send", p.err)
	}
	op := &sendOp{tok: p.nextTok, mr: mr, n: len(buf), done: make(chan struct{})}
	p.nextTok++
	p.sends[op.tok] = op
	rts := &outMsg{hdr: header{kind: kindRTS, tag: tag, len: uint64(len(buf)), tok: op.tok}}
	p.outq = append(p.outq, rts)
	p.pumpLocked()
	p.mu.Unlock()

	select {
	case <-op.done:
	case <-ctx.Done():
	}
	p.mu.Lock()
	if op.finished {
		err := op.err
		p.mu.Unlock()
		if err != nil {
			return p.opErr("send", err)
		}
		return nil
	}
	if !rts.posted {
		rts.cancelled = true
		delete(p.sends, op.tok)
		p.mu.Unlock()
		return p.opErr("send", fmt.Errorf("tag %#x, %d bytes, waiting for flow-control credit: %w", uint64(tag), len(buf), ctx.Err()))
	}
	cancelled := fmt.Errorf("tag %#x, %d bytes: %w", uint64(tag), len(buf), ctx.Err())
	if !op.posted && !op.tmpMR {
		// The receiver expects this message: deliver it from a private
		// copy so that the stream stays in step and buf is free now.
		tmp := slices.Clone(buf)
		if mr, err := p.t.pd.RegMR(tmp, verbs.AccessLocalWrite); err == nil {
			op.mr, op.tmpMR = mr, true
			p.mu.Unlock()
			return p.opErr("send", cancelled)
		}
	}
	p.mu.Unlock()
	return p.abandon("send", op.done, cancelled)
}

// abandon waits up to AbandonGrace for an RDMA write that already owns the
// caller's buffer to finish; if it does not, the connection is failed, so
// that the device stops touching the buffer. Either way the call returns
// err.
func (p *peer) abandon(op string, done <-chan struct{}, err error) error {
	t := time.NewTimer(p.t.cfg.AbandonGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.fail(fmt.Errorf("%s abandoned with its RDMA write unfinished after %v: %w", op, p.t.cfg.AbandonGrace, err))
	}
	return p.opErr(op, err)
}

func (p *peer) recv(ctx context.Context, tag transport.Tag, buf []byte) error {
	return p.postRecv(ctx, tag, buf).Wait()
}

// postedRecv is a receive that has taken its place in its tag's order and
// not been waited for yet (transport.PostedRecv).
type postedRecv struct {
	p       *peer
	ctx     context.Context
	op      *recvOp
	release func() // of the registration of a large buffer
	err     error  // failed before it was posted
}

// Wait implements transport.PostedRecv.
func (r *postedRecv) Wait() error {
	if r.err != nil {
		return r.err
	}
	defer r.release()
	return r.p.waitRecv(r.ctx, r.op)
}

// postRecv registers buf if it is large and matches it with the tag's next
// message or queues it; waitRecv then waits for the data.
func (p *peer) postRecv(ctx context.Context, tag transport.Tag, buf []byte) *postedRecv {
	if err := ctx.Err(); err != nil {
		return &postedRecv{err: p.opErr("recv", err)}
	}
	op := &recvOp{tag: tag, buf: buf, done: make(chan struct{})}
	release := func() {}
	if len(buf) > p.eager {
		mr, rel, err := p.t.cache.acquire(buf)
		if err != nil {
			return &postedRecv{err: p.opErr("recv", err)}
		}
		op.mr, release = mr, rel
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		release()
		return &postedRecv{err: p.opErr("recv", p.err)}
	}
	if q := p.tag(tag); len(q.arrived) > 0 {
		a := q.arrived[0]
		q.arrived = q.arrived[1:]
		p.tidyLocked(tag)
		p.matchLocked(op, a)
		p.pumpLocked()
	} else {
		q.waiting = append(q.waiting, op)
	}
	return &postedRecv{p: p, ctx: ctx, op: op, release: release}
}

func (p *peer) waitRecv(ctx context.Context, op *recvOp) error {
	tag, buf := op.tag, op.buf
	select {
	case <-op.done:
	case <-ctx.Done():
	}
	p.mu.Lock()
	if op.finished {
		err := op.err
		p.mu.Unlock()
		var se *transport.SizeError
		if err == nil || errors.As(err, &se) {
			return err
		}
		return p.opErr("recv", err)
	}
	if pk := p.parkOf(op); pk != nil {
		// Waiting for a parked message to land: hand the message to the
		// next receive of the tag, posted already or still to come.
		pk.waiter = nil
		if q := p.tags[tag]; q != nil && len(q.waiting) > 0 {
			next := q.waiting[0]
			q.waiting = q.waiting[1:]
			p.tidyLocked(tag)
			p.matchLocked(next, arrival{rts: true, n: uint64(len(pk.buf)), park: pk})
		} else {
			q := p.tag(tag)
			q.arrived = slices.Insert(q.arrived, 0, arrival{rts: true, n: uint64(len(pk.buf)), park: pk})
		}
		p.mu.Unlock()
		return p.opErr("recv", fmt.Errorf("tag %#x, %d bytes: %w", uint64(tag), len(buf), ctx.Err()))
	}
	if q := p.tags[tag]; q != nil && slices.Contains(q.waiting, op) {
		q.waiting = slices.DeleteFunc(q.waiting, func(o *recvOp) bool { return o == op })
		p.tidyLocked(tag)
		p.mu.Unlock()
		return p.opErr("recv", fmt.Errorf("tag %#x, %d bytes: %w", uint64(tag), len(buf), ctx.Err()))
	}
	cancelled := fmt.Errorf("tag %#x, %d bytes: %w", uint64(tag), len(buf), ctx.Err())
	if op.cts != nil && !op.cts.posted && !op.tmpMR {
		// The peer has not been told where to write yet: point it at a
		// private buffer instead, so buf is free now.
		tmp := make([]byte, len(buf))
		if mr, err := p.t.pd.RegMR(tmp, verbs.AccessLocalWrite|verbs.AccessRemoteWrite); err == nil {
			op.buf, op.mr, op.tmpMR = tmp, mr, true
			op.cts.hdr.addr, op.cts.hdr.rkey = mr.Addr(), mr.RKey()
			p.mu.Unlock()
			return p.opErr("recv", cancelled)
		}
	}
	p.mu.Unlock()
	// The peer may be writing into buf: wait for it (or fail the link).
	return p.abandon("recv", op.done, cancelled)
}

// parkOf returns the parked message op waits for, if any.
func (p *peer) parkOf(op *recvOp) *parked {
	for _, r := range p.recvs {
		if r.park != nil && r.park.waiter == op {
			return r.park
		}
	}
	return nil
}

// matchLocked pairs a receive with the next message of its tag.
func (p *peer) matchLocked(op *recvOp, a arrival) {
	if a.park != nil {
		if a.park.done {
			p.deliverLocked(op, a.park.buf)
			p.unparkLocked(a.park)
		} else {
			a.park.waiter = op
		}
		return
	}
	if !a.rts {
		p.deliverLocked(op, a.data)
		return
	}
	if a.n != uint64(len(op.buf)) || op.mr == nil {
		// The sender drops the message; the receiver reports the mismatch.
		p.queueLocked(&outMsg{hdr: header{kind: kindCTS, status: ctsMismatch, tok: a.tok}})
		p.finishRecv(op, &transport.SizeError{Peer: p.rank, Tag: op.tag, Want: len(op.buf), Got: int(min(a.n, math.MaxInt))})
		return
	}
	rtok := p.nextTok
	p.nextTok++
	p.recvs[rtok] = op
	op.cts = &outMsg{hdr: header{kind: kindCTS, status: ctsOK, tok: a.tok, len: a.n,
		addr: op.mr.Addr(), rkey: op.mr.RKey(), rtok: rtok}}
	p.queueLocked(op.cts)
}

// deliverLocked completes op with a whole message already in memory.
func (p *peer) deliverLocked(op *recvOp, data []byte) {
	if len(data) != len(op.buf) {
		p.finishRecv(op, &transport.SizeError{Peer: p.rank, Tag: op.tag, Want: len(op.buf), Got: len(data)})
		return
	}
	copy(op.buf, data)
	p.finishRecv(op, nil)
}

// parkLocked accepts a large message that has no Recv yet into a fresh
// registered buffer. It reports false when over the parking budget.
func (p *peer) parkLocked(q *tagQueue, h header) bool {
	if limit := p.t.cfg.ParkBytes; limit < 0 || p.parked+int64(h.len) > limit {
		return false
	}
	var pk *parked
	if pool := p.parkPool[int(h.len)]; len(pool) > 0 {
		pk = pool[len(pool)-1]
		p.parkPool[int(h.len)] = pool[:len(pool)-1]
		p.parkPoolBytes -= int64(h.len)
		*pk = parked{buf: pk.buf, mr: pk.mr}
	} else {
		buf := make([]byte, h.len)
		mr, err := p.t.pd.RegMR(buf, verbs.AccessLocalWrite|verbs.AccessRemoteWrite)
		if err != nil {
			return false // wait for the Recv's own buffer instead
		}
		pk = &parked{buf: buf, mr: mr}
	}
	buf, mr := pk.buf, pk.mr
	p.parked += int64(h.len)
	rtok := p.nextTok
	p.nextTok++
	p.recvs[rtok] = &recvOp{tag: h.tag, buf: buf, mr: mr, park: pk, done: make(chan struct{})}
	q.arrived = append(q.arrived, arrival{rts: true, n: h.len, park: pk})
	p.queueLocked(&outMsg{hdr: header{kind: kindCTS, status: ctsOK, tok: h.tok, len: h.len,
		addr: mr.Addr(), rkey: mr.RKey(), rtok: rtok}})
	return true
}

// parkDoneLocked runs when a parked message has landed.
func (p *peer) parkDoneLocked(pk *parked) {
	pk.done = true
	if pk.waiter != nil {
		p.deliverLocked(pk.waiter, pk.buf)
		p.unparkLocked(pk)
	}
}

// unparkLocked returns a delivered parking buffer to the pool (or
// deregisters it when the pool is full).
func (p *peer) unparkLocked(pk *parked) {
	n := len(pk.buf)
	p.parked -= int64(n)
	if p.parkPoolBytes+int64(n) > p.t.cfg.ParkBytes {
		pk.mr.Deregister()
		return
	}
	if p.parkPool == nil {
		p.parkPool = make(map[int][]*parked)
	}
	p.parkPool[n] = append(p.parkPool[n], pk)
	p.parkPoolBytes += int64(n)
}

func (p *peer) queueLocked(m *outMsg) { p.outq = append(p.outq, m) }

func (p *peer) finishRecv(op *recvOp, err error) {
	if !op.finished {
		op.finished, op.err = true, err
		close(op.done)
	}
}

func (p *peer) finishSend(op *sendOp, err error) {
	if !op.finished {
		op.finished, op.err = true, err
		close(op.done)
	}
}

// pumpLocked posts queued messages in order while credit, send queue
// entries and slots allow, then a credit-only message if one is due.
func (p *peer) pumpLocked() {
	for p.err == nil && len(p.outq) > 0 {
		m := p.outq[0]
		if m.cancelled {
			p.outq = p.outq[1:]
			continue
		}
		// Protocol messages leave the peer's last receive for a credit-only message.
		if p.sqFree == 0 || p.sent+2 > p.limit || (m.write == nil && len(p.freeSlots) == 0) {
			break
		}
		if err := p.postLocked(m); err != nil {
			p.failLocked(err)
			return
		}
		p.outq = p.outq[1:]
	}
	if p.err == nil && p.posted-p.advertised >= p.refresh && p.sent+1 <= p.limit && p.sqFree > 0 && len(p.freeSlots) > 0 {
		if err := p.postLocked(&outMsg{hdr: header{kind: kindCredit}}); err != nil {
			p.failLocked(err)
		}
	}
}

// postLocked posts one message; the caller checked credit and resources.
func (p *peer) postLocked(m *outMsg) error {
	var wr verbs.SendWR
	if op := m.write; op != nil {
		wr = verbs.SendWR{ID: wrID(p.rank, wrWrite, uint64(op.tok)), Opcode: verbs.OpRDMAWriteWithImm,
			SGL:      []verbs.SGE{{Addr: op.mr.Addr(), Length: uint32(op.n), LKey: op.mr.LKey()}},
			Imm:      m.hdr.rtok,
			Signaled: true, RemoteAddr: m.hdr.addr, RKey: m.hdr.rkey}
		if err := p.qp.PostSend(&wr); err != nil {
			return fmt.Errorf("post RDMA write with immediate: %w", err)
		}
		op.posted = true
	} else {
		slot := p.freeSlots[len(p.freeSlots)-1]
		b := p.sendMR.Bytes()[slot*p.slot : (slot+1)*p.slot]
		m.hdr.posted = p.posted
		m.hdr.encode(b)
		n := hdrLen + copy(b[hdrLen:], m.payload)
		wr = verbs.SendWR{ID: wrID(p.rank, wrEager, uint64(slot)), Opcode: verbs.OpSend,
			SGL:      []verbs.SGE{{Addr: p.sendMR.Addr() + uint64(slot*p.slot), Length: uint32(n), LKey: p.sendMR.LKey()}},
			Signaled: true}
		if err := p.qp.PostSend(&wr); err != nil {
			return fmt.Errorf("post send: %w", err)
		}
		p.freeSlots = p.freeSlots[:len(p.freeSlots)-1]
		p.advertised = p.posted
	}
	p.sent++
	p.sqFree--
	now := time.Now()
	if p.unacked == 0 {
		p.ackedAt = now // the acknowledgement clock starts with the oldest request
	}
	p.unacked++
	p.postedAt = now
	m.posted = true
	if m.done != nil {
		close(m.done)
	}
	return nil
}

// fail makes err the peer's fatal error (if it has none yet): the QP moves
// to the error state, so the device stops touching our buffers, and every
// pending operation completes with err.
func (p *peer) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failLocked(err)
}

func (p *peer) failLocked(err error) {
	if p.err != nil {
		return
	}
	p.err = err
	p.qp.Modify(verbs.QPAttr{State: verbs.QPError})
	if !errors.Is(err, ErrClosed) {
		p.t.noteFailure(&transport.PeerError{Peer: p.rank, Op: "connection", Err: err})
	}
	for _, m := range p.outq {
		if m.done != nil && !m.posted {
			m.err = err
			close(m.done)
		}
	}
	p.outq = nil
	// The QP is in ERR: the device no longer touches any buffer.
	for tok, op := range p.sends {
		p.finishSend(op, err)
		if op.tmpMR {
			op.mr.Deregister()
		}
		delete(p.sends, tok)
	}
	for tok, op := range p.recvs {
		p.finishRecv(op, err)
		if op.park != nil && op.park.waiter != nil {
			p.finishRecv(op.park.waiter, err)
		}
		if op.tmpMR || op.park != nil {
			op.mr.Deregister()
		}
		delete(p.recvs, tok)
	}
	for t, q := range p.tags {
		for _, op := range q.waiting {
			p.finishRecv(op, err)
		}
		for _, a := range q.arrived {
			if a.park != nil && a.park.done { // (undone ones were released above)
				a.park.mr.Deregister()
			}
		}
		delete(p.tags, t)
	}
}

// complete handles one work completion of this peer (poller goroutine).
func (p *peer) complete(wc verbs.WorkCompletion) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return // flushed work after a failure
	}
	_, kind, low := splitWRID(wc.ID)
	if wc.Status != verbs.StatusSuccess {
		what := map[int]string{wrRecv: "receive", wrEager: "send", wrWrite: "RDMA write with immediate"}[kind]
		p.failLocked(&verbs.WCError{Status: wc.Status, Opcode: what, QPN: wc.QPN})
		return
	}
	protocol := func(format string, args ...any) {
		p.failLocked(fmt.Errorf("rdma protocol error: "+format, args...))
	}
	if kind == wrEager || kind == wrWrite {
		p.unacked--
		p.ackedAt = time.Now()
	} else {
		p.heardAt = time.Now()
	}
	switch kind {
	case wrEager:
		p.sqFree++
		p.freeSlots = append(p.freeSlots, int(low))
	case wrWrite:
		p.sqFree++
		if op := p.sends[uint32(low)]; op != nil {
			delete(p.sends, op.tok)
			p.finishSend(op, nil)
			if op.tmpMR {
				op.mr.Deregister()
			}
		}
	case wrRecv:
		slot := int(low)
		if wc.Opcode == verbs.WCRecvRDMAWithImm {
			op := p.recvs[wc.Imm]
			if op == nil {
				protocol("RDMA write with unknown immediate %d", wc.Imm)
				return
			}
			delete(p.recvs, wc.Imm)
			if int(wc.ByteLen) != len(op.buf) {
				protocol("RDMA write of %d bytes into a %d-byte receive", wc.ByteLen, len(op.buf))
				return
			}
			p.finishRecv(op, nil)
			if op.park != nil {
				p.parkDoneLocked(op.park)
			}
			if op.tmpMR {
				op.mr.Deregister()
			}
		} else if !p.handleEager(slot, int(wc.ByteLen), protocol) {
			return
		}
		if err := p.postRecvLocked(slot); err != nil {
			p.failLocked(err)
			return
		}
	default:
		protocol("completion with unknown work request id %#x", wc.ID)
		return
	}
	p.pumpLocked()
}

// handleEager processes the message in receive slot (n bytes). It reports
// false after a protocol error.
func (p *peer) handleEager(slot, n int, protocol func(string, ...any)) bool {
	if n < hdrLen || n > p.slot {
		protocol("eager message of %d bytes", n)
		return false
	}
	b := p.recvMR.Bytes()[slot*p.slot : slot*p.slot+n]
	h := decodeHeader(b)
	if h.posted > p.limit {
		p.limit = h.posted
	}
	switch h.kind {
	case kindData:
		payload := b[hdrLen:]
		if uint64(len(payload)) != h.len {
			protocol("data message claims %d bytes, carries %d", h.len, len(payload))
			return false
		}
		q := p.tag(h.tag)
		if len(q.waiting) > 0 {
			op := q.waiting[0]
			q.waiting = q.waiting[1:]
			p.tidyLocked(h.tag)
			p.matchLocked(op, arrival{data: payload})
		} else {
			q.arrived = append(q.arrived, arrival{data: slices.Clone(payload)})
		}
	case kindRTS:
		a := arrival{rts: true, n: h.len, tok: h.tok}
		q := p.tag(h.tag)
		if len(q.waiting) > 0 {
			op := q.waiting[0]
			q.waiting = q.waiting[1:]
			p.tidyLocked(h.tag)
			p.matchLocked(op, a)
		} else if !p.parkLocked(q, h) {
			q.arrived = append(q.arrived, a)
		}
	case kindCTS:
		op := p.sends[h.tok]
		if op == nil {
			protocol("clear-to-send for unknown send %d", h.tok)
			return false
		}
		if h.status == ctsMismatch {
			delete(p.sends, h.tok) // the receiver reports the size error
			p.finishSend(op, nil)
			if op.tmpMR {
				op.mr.Deregister()
			}
			break
		}
		if h.len != uint64(op.n) {
			protocol("clear-to-send for %d bytes, sending %d", h.len, op.n)
			return false
		}
		p.queueLocked(&outMsg{hdr: header{addr: h.addr, rkey: h.rkey, rtok: h.rtok}, write: op})
	case kindCredit, kindPing:
	default:
		protocol("unknown message kind %d", h.kind)
		return false
	}
	return true
}
