package softverbs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// Wire format. A connection starts with a hello from the requester
// (magic, source QPN, destination QPN) answered by one byte (1 = accepted).
// Then the requester sends requests (header + payload) and the responder
// answers each with a 5-byte ACK/NAK (PSN, syndrome), in order.
const (
	helloMagic = 0x53565242 // "SVRB"
	helloLen   = 12
	reqHdrLen  = 32 // op u8, pad[3], psn u32, imm u32, rkey u32, raddr u64, len u64
	ackLen     = 5
)

// Syndromes of an ACK/NAK.
const (
	synACK       = 0
	synRNR       = 1
	synRemAccess = 2
	synRemInvReq = 3
)

var synStatus = [...]verbs.Status{synACK: verbs.StatusSuccess, synRNR: verbs.StatusRNRRetryExcErr,
	synRemAccess: verbs.StatusRemAccessErr, synRemInvReq: verbs.StatusRemInvReqErr}

// sendWR is a posted send work request with its progress.
type sendWR struct {
	wr      verbs.SendWR
	psn     uint32
	started bool          // the requester began transmitting it (under qp.mu)
	written chan struct{} // closed once the requester no longer reads its memory
}

type qp struct {
	dev      *device
	pd       *pd
	num      uint32
	cap      verbs.QPCap
	scq, rcq *cq

	mu       sync.Mutex
	sqCond   *sync.Cond // signalled when sq grows or the state changes
	state    verbs.QPState
	stateCh  chan struct{} // closed and replaced on every state change
	access   verbs.Access
	remote   verbs.QPAddr
	sqPSN    uint32 // next PSN to send
	rqPSN    uint32 // next PSN expected
	sq       []*sendWR
	inflight []*sendWR // transmitted, awaiting ACK, in order
	rq       []verbs.RecvWR
	out, in  net.Conn
	sent     uint64
	failMsg  string

	// dma is read-held while the requester reads or the responder writes
	// registered memory. An external move to ERR takes it exclusively, so
	// once Modify(ERR) or Close returns no request touches memory again
	// (the guarantee a caller needs before reusing its buffers).
	dma sync.RWMutex
}

func (q *qp) Num() uint32 { return q.num }

func (q *qp) State() verbs.QPState {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.state
}

func (q *qp) setStateLocked(s verbs.QPState) {
	q.state = s
	close(q.stateCh)
	q.stateCh = make(chan struct{})
	q.sqCond.Broadcast()
}

func (q *qp) Modify(a verbs.QPAttr) error {
	if a.State == verbs.QPError {
		// Legal from every state. Once this returns, no request of this QP
		// reads or writes registered memory any more.
		q.fail(verbs.StatusWRFlushErr, "moved to ERR by modify")
		q.quiesce()
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	from := q.state
	bad := func(why string) error {
		return fmt.Errorf("softverbs: modify QP %d %s -> %s: %s", q.num, from, a.State, why)
	}
	switch {
	case from == verbs.QPReset && a.State == verbs.QPInit:
		if a.Port != 1 {
			return bad(fmt.Sprintf("port %d does not exist", a.Port))
		}
		q.access = a.Access
	case from == verbs.QPInit && a.State == verbs.QPRTR:
		if a.Remote.QPN == 0 || a.Remote.LID == 0 {
			return bad("remote LID and QPN are required")
		}
		if a.MTU.Bytes() == 0 {
			return bad(fmt.Sprintf("invalid path MTU code %d", a.MTU))
		}
		q.remote = a.Remote
		q.rqPSN = a.Remote.PSN
	case from == verbs.QPRTR && a.State == verbs.QPRTS:
		q.sqPSN = a.PSN
		go q.requester()
	default:
		return bad("not a legal transition")
	}
	q.setStateLocked(a.State)
	return nil
}

func (q *qp) PostSend(wr *verbs.SendWR) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch q.state {
	case verbs.QPRTS:
	case verbs.QPError:
		// Posting to a QP in ERR is legal; the request completes flushed.
		w := *wr
		go q.scq.push(verbs.WorkCompletion{ID: w.ID, Status: verbs.StatusWRFlushErr, Opcode: wcOpcode(w.Opcode), QPN: q.num})
		return nil
	default:
		return fmt.Errorf("softverbs: post send on QP %d in state %s: %w", q.num, q.state, errInvalid)
	}
	if len(q.sq)+len(q.inflight) >= q.cap.MaxSendWR {
		return fmt.Errorf("softverbs: post send on QP %d: send queue full (%d work requests): %w", q.num, q.cap.MaxSendWR, errNoMem)
	}
	if q.cap.MaxSendSGE > 0 && len(wr.SGL) > q.cap.MaxSendSGE {
		return fmt.Errorf("softverbs: post send on QP %d: %d SGEs, max %d: %w", q.num, len(wr.SGL), q.cap.MaxSendSGE, errInvalid)
	}
	w := &sendWR{wr: *wr, written: make(chan struct{})}
	w.wr.SGL = append([]verbs.SGE(nil), wr.SGL...)
	q.sq = append(q.sq, w)
	q.sqCond.Broadcast()
	return nil
}

var (
	errInvalid = errors.New("invalid argument (EINVAL)")
	errNoMem   = errors.New("no space (ENOMEM)")
)

func (q *qp) PostRecv(wr *verbs.RecvWR) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch q.state {
	case verbs.QPInit, verbs.QPRTR, verbs.QPRTS:
	case verbs.QPError:
		id := wr.ID
		go q.rcq.push(verbs.WorkCompletion{ID: id, Status: verbs.StatusWRFlushErr, Opcode: verbs.WCRecv, QPN: q.num})
		return nil
	default:
		return fmt.Errorf("softverbs: post recv on QP %d in state %s: %w", q.num, q.state, errInvalid)
	}
	if len(q.rq) >= q.cap.MaxRecvWR {
		return fmt.Errorf("softverbs: post recv on QP %d: receive queue full (%d work requests): %w", q.num, q.cap.MaxRecvWR, errNoMem)
	}
	w := *wr
	w.SGL = append([]verbs.SGE(nil), wr.SGL...)
	q.rq = append(q.rq, w)
	return nil
}

// Close destroys the QP: it moves to ERR (flushing its work requests) and
// leaves the device.
func (q *qp) Close() error {
	q.fail(verbs.StatusWRFlushErr, "destroyed")
	q.quiesce()
	q.dev.mu.Lock()
	delete(q.dev.qps, q.num)
	q.dev.mu.Unlock()
	return nil
}

// quiesce waits until no request is reading or writing registered memory.
// The QP must already be in ERR (its connections closed), so this is quick.
func (q *qp) quiesce() {
	q.dma.Lock()
	q.dma.Unlock()
}

func wcOpcode(o verbs.Opcode) verbs.WCOpcode {
	if o == verbs.OpSend || o == verbs.OpSendWithImm {
		return verbs.WCSend
	}
	return verbs.WCRDMAWrite
}

// fail moves the QP to the error state. The oldest outstanding send request
// completes with status first (unless first is a flush), every other
// outstanding request, send or receive, with "work request flushed".
// Connections close, so the peer QP errors too.
func (q *qp) fail(first verbs.Status, why string) { q.failWR(nil, first, why) }

func closeConns(cs []net.Conn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// failWR is fail with the request that caused the error: culprit (if not
// nil) completes with status first, all others are flushed.
func (q *qp) failWR(culprit *sendWR, first verbs.Status, why string) {
	q.mu.Lock()
	if q.state == verbs.QPError {
		q.mu.Unlock()
		return
	}
	q.failMsg = why
	q.setStateLocked(verbs.QPError)
	for _, w := range q.sq {
		close(w.written) // never started: nobody reads its memory
	}
	sends := append(q.inflight, q.sq...)
	q.inflight, q.sq = nil, nil
	recvs := q.rq
	q.rq = nil
	conns := []net.Conn{q.out, q.in}
	q.mu.Unlock()
	if q.dev.prov.cut.Load() {
		// A cut cable carries no news of this QP's error: the peer must
		// find out by itself, as over a real dead link. Local reads and
		// writes end now (a deadline, which sends nothing); the "wire"
		// closes once the cable is back (or the device closes).
		for _, c := range conns {
			if c != nil {
				_ = c.SetDeadline(time.Unix(1, 0))
			}
		}
		go func() {
			for q.dev.prov.cut.Load() && !q.dev.isClosed() {
				time.Sleep(5 * time.Millisecond)
			}
			closeConns(conns)
		}()
	} else {
		closeConns(conns)
	}

	// Completions are pushed from a goroutine: a request being transmitted
	// must finish reading its memory (its connection is closed, so that is
	// quick) before the application may reuse it.
	go func() {
		for i, w := range sends {
			<-w.written
			st := verbs.StatusWRFlushErr
			if w == culprit || (culprit == nil && i == 0) {
				st = first
			}
			q.scq.push(verbs.WorkCompletion{ID: w.wr.ID, Status: st, Opcode: wcOpcode(w.wr.Opcode), QPN: q.num})
		}
		for _, r := range recvs {
			q.rcq.push(verbs.WorkCompletion{ID: r.ID, Status: verbs.StatusWRFlushErr, Opcode: verbs.WCRecv, QPN: q.num})
		}
	}()
}

// requester is the QP's send engine, started by the move to RTS: it
// connects to the remote QP and transmits send requests in order.
func (q *qp) requester() {
	q.mu.Lock()
	remote := q.remote
	q.mu.Unlock()
	conn, err := q.connect(remote)
	if err != nil {
		q.fail(verbs.StatusRetryExcErr, err.Error())
		return
	}
	q.mu.Lock()
	if q.state == verbs.QPError {
		q.mu.Unlock()
		conn.Close()
		return
	}
	q.out = conn
	q.mu.Unlock()
	go q.ackReader(conn)

	faults := q.dev.prov.opts.Faults
	hdr := make([]byte, reqHdrLen)
	for {
		q.mu.Lock()
		for len(q.sq) == 0 && q.state == verbs.QPRTS {
			q.sqCond.Wait()
		}
		if q.state != verbs.QPRTS {
			q.mu.Unlock()
			return
		}
		w := q.sq[0]
		q.sq = q.sq[1:]
		q.sent++
		n := q.sent
		w.psn = q.sqPSN
		q.sqPSN++
		w.started = true
		q.inflight = append(q.inflight, w)
		q.mu.Unlock()

		if faults.FailQP != nil && faults.FailQP(q.num, n) {
			close(w.written)
			q.failWR(w, verbs.StatusFatalErr, fmt.Sprintf("injected fault before request %d", n))
			return
		}
		if faults.SendDelay > 0 {
			time.Sleep(faults.SendDelay)
		}
		if !q.waitCable() {
			close(w.written)
			return
		}
		// Gather: every SGE must lie inside a region of this PD.
		bufs := net.Buffers{hdr}
		var total uint64
		for _, s := range w.wr.SGL {
			m := q.dev.lookupLocal(q.pd, s.LKey)
			var b []byte
			if m != nil {
				b = m.slice(s.Addr, s.Length)
			}
			if b == nil {
				close(w.written)
				q.failWR(w, verbs.StatusLocProtErr, fmt.Sprintf("SGE addr %#x len %d lkey %#x is not registered memory", s.Addr, s.Length, s.LKey))
				return
			}
			bufs = append(bufs, b)
			total += uint64(s.Length)
		}
		hdr[0] = byte(w.wr.Opcode)
		binary.LittleEndian.PutUint32(hdr[4:], w.psn)
		binary.LittleEndian.PutUint32(hdr[8:], w.wr.Imm)
		binary.LittleEndian.PutUint32(hdr[12:], w.wr.RKey)
		binary.LittleEndian.PutUint64(hdr[16:], w.wr.RemoteAddr)
		binary.LittleEndian.PutUint64(hdr[24:], total)
		q.dma.RLock()
		_, err := bufs.WriteTo(conn)
		q.dma.RUnlock()
		close(w.written)
		if err != nil {
			q.fail(verbs.StatusRetryExcErr, fmt.Sprintf("connection to remote QP %d lost: %v", remote.QPN, err))
			return
		}
	}
}

func (q *qp) connect(remote verbs.QPAddr) (net.Conn, error) {
	timeout := q.dev.prov.opts.ConnectTimeout
	conn, err := net.DialTimeout("tcp", remoteAddr(remote), timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to remote QP %d: %w", remote.QPN, err)
	}
	hello := make([]byte, helloLen)
	binary.LittleEndian.PutUint32(hello[0:], helloMagic)
	binary.LittleEndian.PutUint32(hello[4:], q.num)
	binary.LittleEndian.PutUint32(hello[8:], remote.QPN)
	conn.SetDeadline(time.Now().Add(timeout + time.Second))
	if _, err := conn.Write(hello); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to remote QP %d: %w", remote.QPN, err)
	}
	var ok [1]byte
	if _, err := io.ReadFull(conn, ok[:]); err != nil || ok[0] != 1 {
		conn.Close()
		return nil, fmt.Errorf("connect to remote QP %d: refused (not in RTR for QP %d)", remote.QPN, q.num)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// ackReader completes transmitted requests as their ACKs arrive; a NAK
// completes the request with its error and fails the QP.
func (q *qp) ackReader(conn net.Conn) {
	r := bufio.NewReader(conn)
	var ack [ackLen]byte
	for {
		if _, err := io.ReadFull(r, ack[:]); err != nil {
			q.holdWhileCut() // no news crosses a cut cable
			q.fail(verbs.StatusRetryExcErr, fmt.Sprintf("connection to remote QP lost: %v", err))
			return
		}
		psn, syn := binary.LittleEndian.Uint32(ack[:4]), ack[4]
		q.mu.Lock()
		if q.state == verbs.QPError {
			q.mu.Unlock()
			return
		}
		if len(q.inflight) == 0 {
			q.mu.Unlock()
			q.fail(verbs.StatusBadRespErr, fmt.Sprintf("response PSN %d with no request outstanding", psn))
			return
		}
		w := q.inflight[0]
		if w.psn != psn || int(syn) >= len(synStatus) {
			q.mu.Unlock()
			q.fail(verbs.StatusBadRespErr, fmt.Sprintf("response PSN %d syndrome %d, expected PSN %d", psn, syn, w.psn))
			return
		}
		if syn != synACK {
			q.mu.Unlock()
			q.fail(synStatus[syn], "NAK from responder")
			return
		}
		q.inflight = q.inflight[1:]
		q.mu.Unlock()
		<-w.written
		if w.wr.Signaled {
			q.scq.push(verbs.WorkCompletion{ID: w.wr.ID, Status: verbs.StatusSuccess, Opcode: wcOpcode(w.wr.Opcode), QPN: q.num})
		}
	}
}

// acceptLoop hands each incoming connection to the QP it names.
func (d *device) acceptLoop() {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			c.Close()
			return
		}
		d.conns[c] = struct{}{}
		d.mu.Unlock()
		go d.admit(c)
	}
}

func (d *device) admit(c net.Conn) {
	defer func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
	}()
	timeout := d.prov.opts.ConnectTimeout
	c.SetDeadline(time.Now().Add(timeout))
	hello := make([]byte, helloLen)
	if _, err := io.ReadFull(c, hello); err != nil || binary.LittleEndian.Uint32(hello) != helloMagic {
		c.Close()
		return
	}
	src, dst := binary.LittleEndian.Uint32(hello[4:]), binary.LittleEndian.Uint32(hello[8:])
	d.mu.Lock()
	q := d.qps[dst]
	d.mu.Unlock()
	if q == nil {
		c.Close()
		return
	}
	// A QP accepts requests once it is in RTR and connected to src. Until
	// then, wait (hardware would drop the packets and the sender retry).
	deadline := time.After(timeout)
	for {
		q.mu.Lock()
		st, ch := q.state, q.stateCh
		ok := (st == verbs.QPRTR || st == verbs.QPRTS) && q.remote.QPN == src && q.in == nil
		if ok {
			q.in = c
		}
		q.mu.Unlock()
		if ok {
			break
		}
		if st == verbs.QPError || st == verbs.QPRTR || st == verbs.QPRTS {
			c.Close() // connected elsewhere, errored, or a second connection
			return
		}
		select {
		case <-ch:
		case <-deadline:
			c.Close()
			return
		}
	}
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{1}); err != nil {
		q.fail(verbs.StatusRetryExcErr, "accept failed")
		return
	}
	q.responder(c)
}

// responder executes the remote requester's requests against this QP's
// receive queue and memory regions, answering each with an ACK or NAK.
func (q *qp) responder(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	hdr := make([]byte, reqHdrLen)
	var ack [ackLen]byte
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			q.holdWhileCut() // no news crosses a cut cable
			// The remote closes both directions together. When our
			// requester is connected, its ACK reader sees the close too,
			// after any NAK still in flight, and reports the right status.
			q.mu.Lock()
			out := q.out
			q.mu.Unlock()
			if out == nil {
				q.fail(verbs.StatusRetryExcErr, fmt.Sprintf("connection from remote QP lost: %v", err))
			}
			return
		}
		if !q.waitCable() {
			return
		}
		op := verbs.Opcode(hdr[0])
		psn := binary.LittleEndian.Uint32(hdr[4:])
		imm := binary.LittleEndian.Uint32(hdr[8:])
		rkey := binary.LittleEndian.Uint32(hdr[12:])
		raddr := binary.LittleEndian.Uint64(hdr[16:])
		n := binary.LittleEndian.Uint64(hdr[24:])
		q.dma.RLock()
		syn, status, why := q.execute(r, op, psn, imm, rkey, raddr, n)
		q.dma.RUnlock()
		binary.LittleEndian.PutUint32(ack[:4], psn)
		ack[4] = syn
		w.Write(ack[:])
		// Flush only when no further request is already buffered, so
		// back-to-back small requests share one write.
		if r.Buffered() < reqHdrLen {
			if err := w.Flush(); err != nil {
				q.fail(verbs.StatusRetryExcErr, fmt.Sprintf("connection from remote QP lost: %v", err))
				return
			}
		}
		if status != verbs.StatusSuccess {
			w.Flush()
			q.fail(status, why)
			return
		}
	}
}

// execute performs one request. It always consumes the payload from r so
// the stream stays in sync. It returns the syndrome for the requester and,
// when this QP must enter the error state, the local status and reason.
func (q *qp) execute(r *bufio.Reader, op verbs.Opcode, psn, imm, rkey uint32, raddr, n uint64) (byte, verbs.Status, string) {
	discard := func() { io.CopyN(io.Discard, r, int64(n)) }
	q.mu.Lock()
	if q.state != verbs.QPRTR && q.state != verbs.QPRTS {
		q.mu.Unlock()
		discard()
		return synRemInvReq, verbs.StatusWRFlushErr, "request in state " + q.state.String()
	}
	if psn != q.rqPSN {
		want := q.rqPSN
		q.mu.Unlock()
		discard()
		return synRemInvReq, verbs.StatusRemInvReqErr, fmt.Sprintf("PSN %d, expected %d", psn, want)
	}
	q.rqPSN++
	needRecv := op == verbs.OpSend || op == verbs.OpSendWithImm || op == verbs.OpRDMAWriteWithImm
	var rwr verbs.RecvWR
	if needRecv {
		if len(q.rq) == 0 {
			q.rqPSN-- // an RNR NAK does not consume the PSN
			q.mu.Unlock()
			discard()
			// Receiver not ready: the requester errors (rnr_retry 0); this
			// QP stays usable, as in hardware.
			return synRNR, verbs.StatusSuccess, ""
		}
		rwr = q.rq[0]
		q.rq = q.rq[1:]
	}
	access := q.access
	q.mu.Unlock()

	recvFail := func(st verbs.Status) {
		q.rcq.push(verbs.WorkCompletion{ID: rwr.ID, Status: st, Opcode: verbs.WCRecv, QPN: q.num})
	}
	switch op {
	case verbs.OpSend, verbs.OpSendWithImm:
		// Scatter into the receive's SGEs.
		var dst [][]byte
		var room uint64
		for _, s := range rwr.SGL {
			m := q.dev.lookupLocal(q.pd, s.LKey)
			var b []byte
			if m != nil && m.access&verbs.AccessLocalWrite != 0 {
				b = m.slice(s.Addr, s.Length)
			}
			if b == nil {
				discard()
				recvFail(verbs.StatusLocProtErr)
				return synRemInvReq, verbs.StatusLocProtErr, fmt.Sprintf("receive SGE addr %#x lkey %#x is not writable registered memory", s.Addr, s.LKey)
			}
			dst = append(dst, b)
			room += uint64(len(b))
		}
		if n > room {
			discard()
			recvFail(verbs.StatusLocLenErr)
			return synRemInvReq, verbs.StatusLocLenErr, fmt.Sprintf("message of %d bytes exceeds receive buffer of %d", n, room)
		}
		left := n
		for _, b := range dst {
			k := min(uint64(len(b)), left)
			if _, err := io.ReadFull(r, b[:k]); err != nil {
				recvFail(verbs.StatusWRFlushErr)
				return synRemInvReq, verbs.StatusRetryExcErr, fmt.Sprintf("connection lost mid-message: %v", err)
			}
			left -= k
		}
		wc := verbs.WorkCompletion{ID: rwr.ID, Status: verbs.StatusSuccess, Opcode: verbs.WCRecv, QPN: q.num, ByteLen: uint32(n)}
		if op == verbs.OpSendWithImm {
			wc.Imm, wc.HasImm = imm, true
		}
		q.rcq.push(wc)
		return synACK, verbs.StatusSuccess, ""

	case verbs.OpRDMAWrite, verbs.OpRDMAWriteWithImm:
		m := q.dev.lookupRemote(q.pd, rkey)
		var b []byte
		if m != nil && m.access&verbs.AccessRemoteWrite != 0 && access&verbs.AccessRemoteWrite != 0 && n <= 1<<32 {
			b = m.slice(raddr, uint32(n))
		}
		if b == nil {
			discard()
			if needRecv {
				recvFail(verbs.StatusWRFlushErr)
			}
			return synRemAccess, verbs.StatusRemAccessErr, fmt.Sprintf("RDMA write of %d bytes to %#x rkey %#x: no such writable region", n, raddr, rkey)
		}
		if _, err := io.ReadFull(r, b); err != nil {
			if needRecv {
				recvFail(verbs.StatusWRFlushErr)
			}
			return synRemInvReq, verbs.StatusRetryExcErr, fmt.Sprintf("connection lost mid-message: %v", err)
		}
		if needRecv {
			q.rcq.push(verbs.WorkCompletion{ID: rwr.ID, Status: verbs.StatusSuccess, Opcode: verbs.WCRecvRDMAWithImm,
				QPN: q.num, ByteLen: uint32(n), Imm: imm, HasImm: true})
		}
		return synACK, verbs.StatusSuccess, ""
	}
	discard()
	if needRecv {
		recvFail(verbs.StatusWRFlushErr)
	}
	return synRemInvReq, verbs.StatusRemInvReqErr, fmt.Sprintf("unknown opcode %d", op)
}
