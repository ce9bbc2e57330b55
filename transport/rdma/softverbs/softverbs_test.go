package softverbs

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// end is one side of a connected QP pair.
type end struct {
	dev verbs.Device
	pd  verbs.PD
	cq  verbs.CQ
	qp  verbs.QP
}

func open(t *testing.T, p *Provider) *end {
	t.Helper()
	dev, err := p.Open("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	pd, _ := dev.AllocPD()
	cq, err := dev.CreateCQ(64)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := pd.CreateQP(verbs.QPCap{MaxSendWR: 16, MaxRecvWR: 16}, cq, cq)
	if err != nil {
		t.Fatal(err)
	}
	return &end{dev, pd, cq, qp}
}

func (e *end) addr(t *testing.T) verbs.QPAddr {
	port, err := e.dev.QueryPort(1)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := e.dev.QueryGID(1, 0)
	return verbs.QPAddr{LID: port.LID, GID: g, QPN: e.qp.Num(), PSN: 100, MTU: port.ActiveMTU}
}

// pair connects two QPs on separate devices (as two processes would).
func pair(t *testing.T, pa, pb *Provider) (*end, *end) {
	a, b := open(t, pa), open(t, pb)
	for _, x := range []*end{a, b} {
		if err := x.qp.Modify(verbs.QPAttr{State: verbs.QPInit, Port: 1, Access: verbs.AccessLocalWrite | verbs.AccessRemoteWrite}); err != nil {
			t.Fatal(err)
		}
	}
	aa, ba := a.addr(t), b.addr(t)
	for _, c := range []struct {
		x      *end
		remote verbs.QPAddr
	}{{a, ba}, {b, aa}} {
		if err := c.x.qp.Modify(verbs.QPAttr{State: verbs.QPRTR, Remote: c.remote, MTU: verbs.MTU4096}); err != nil {
			t.Fatal(err)
		}
		if err := c.x.qp.Modify(verbs.QPAttr{State: verbs.QPRTS, PSN: 100}); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// next waits up to 5 s for one completion.
func next(t *testing.T, cq verbs.CQ) verbs.WorkCompletion {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wc := make([]verbs.WorkCompletion, 1)
	for {
		n, err := cq.Poll(wc)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return wc[0]
		}
		if err := cq.Wait(ctx); err != nil {
			t.Fatalf("no completion: %v", err)
		}
	}
}

func reg(t *testing.T, e *end, n int, access verbs.Access) verbs.MR {
	t.Helper()
	mr, err := e.pd.RegMR(make([]byte, n), access)
	if err != nil {
		t.Fatal(err)
	}
	return mr
}

func sge(mr verbs.MR, off, n int) []verbs.SGE {
	return []verbs.SGE{{Addr: mr.Addr() + uint64(off), Length: uint32(n), LKey: mr.LKey()}}
}

func TestSendRecvAndWriteWithImm(t *testing.T) {
	a, b := pair(t, New(Options{}), New(Options{}))
	src := reg(t, a, 4096, verbs.AccessLocalWrite)
	copy(src.Bytes(), "hello, verbs")
	dst := reg(t, b, 4096, verbs.AccessLocalWrite|verbs.AccessRemoteWrite)

	b.qp.PostRecv(&verbs.RecvWR{ID: 7, SGL: sge(dst, 0, 64)})
	if err := a.qp.PostSend(&verbs.SendWR{ID: 1, Opcode: verbs.OpSendWithImm, Imm: 42, SGL: sge(src, 0, 12), Signaled: true}); err != nil {
		t.Fatal(err)
	}
	if wc := next(t, a.cq); wc.ID != 1 || wc.Status != verbs.StatusSuccess || wc.Opcode != verbs.WCSend {
		t.Fatalf("send completion %+v", wc)
	}
	wc := next(t, b.cq)
	if wc.ID != 7 || wc.Status != verbs.StatusSuccess || wc.ByteLen != 12 || !wc.HasImm || wc.Imm != 42 {
		t.Fatalf("recv completion %+v", wc)
	}
	if string(dst.Bytes()[:12]) != "hello, verbs" {
		t.Fatalf("received %q", dst.Bytes()[:12])
	}

	// RDMA WRITE WITH IMM lands at the remote address and consumes a receive.
	b.qp.PostRecv(&verbs.RecvWR{ID: 8})
	a.qp.PostSend(&verbs.SendWR{ID: 2, Opcode: verbs.OpRDMAWriteWithImm, Imm: 9, SGL: sge(src, 0, 5), Signaled: true,
		RemoteAddr: dst.Addr() + 1000, RKey: dst.RKey()})
	if wc := next(t, a.cq); wc.Status != verbs.StatusSuccess || wc.Opcode != verbs.WCRDMAWrite {
		t.Fatalf("write completion %+v", wc)
	}
	if wc := next(t, b.cq); wc.ID != 8 || wc.Opcode != verbs.WCRecvRDMAWithImm || wc.Imm != 9 || wc.ByteLen != 5 {
		t.Fatalf("write-imm receive completion %+v", wc)
	}
	if !bytes.Equal(dst.Bytes()[1000:1005], []byte("hello")) {
		t.Fatalf("written %q", dst.Bytes()[1000:1005])
	}
}

func TestRemoteAccessErrorsFailBothQPs(t *testing.T) {
	cases := map[string]func(dst verbs.MR) (uint64, uint32){
		"wrong rkey":    func(dst verbs.MR) (uint64, uint32) { return dst.Addr(), dst.RKey() + 1 },
		"out of bounds": func(dst verbs.MR) (uint64, uint32) { return dst.Addr() + 4000, dst.RKey() },
		"unregistered":  func(dst verbs.MR) (uint64, uint32) { dst.Deregister(); return dst.Addr(), dst.RKey() },
	}
	for name, target := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := pair(t, New(Options{}), New(Options{}))
			src := reg(t, a, 4096, verbs.AccessLocalWrite)
			dst := reg(t, b, 4096, verbs.AccessLocalWrite|verbs.AccessRemoteWrite)
			b.qp.PostRecv(&verbs.RecvWR{ID: 5, SGL: sge(dst, 0, 16)})
			raddr, rkey := target(dst)
			a.qp.PostSend(&verbs.SendWR{ID: 1, Opcode: verbs.OpRDMAWrite, SGL: sge(src, 0, 200), Signaled: true, RemoteAddr: raddr, RKey: rkey})
			a.qp.PostSend(&verbs.SendWR{ID: 2, Opcode: verbs.OpSend, SGL: sge(src, 0, 8), Signaled: true})
			if wc := next(t, a.cq); wc.ID != 1 || wc.Status != verbs.StatusRemAccessErr {
				t.Fatalf("first completion %+v, want remote access error", wc)
			}
			if wc := next(t, a.cq); wc.ID != 2 || wc.Status != verbs.StatusWRFlushErr {
				t.Fatalf("second completion %+v, want flushed", wc)
			}
			if wc := next(t, b.cq); wc.ID != 5 || wc.Status != verbs.StatusWRFlushErr {
				t.Fatalf("responder's receive %+v, want flushed", wc)
			}
			if a.qp.State() != verbs.QPError || b.qp.State() != verbs.QPError {
				t.Fatalf("states %s %s, want ERR ERR", a.qp.State(), b.qp.State())
			}
		})
	}
}

func TestReceiverNotReady(t *testing.T) {
	a, _ := pair(t, New(Options{}), New(Options{}))
	src := reg(t, a, 64, verbs.AccessLocalWrite)
	a.qp.PostSend(&verbs.SendWR{ID: 3, Opcode: verbs.OpSend, SGL: sge(src, 0, 8), Signaled: true})
	if wc := next(t, a.cq); wc.ID != 3 || wc.Status != verbs.StatusRNRRetryExcErr {
		t.Fatalf("completion %+v, want RNR retry exceeded", wc)
	}
}

func TestLocalProtectionAndLengthErrors(t *testing.T) {
	a, b := pair(t, New(Options{}), New(Options{}))
	src := reg(t, a, 64, verbs.AccessLocalWrite)
	a.qp.PostSend(&verbs.SendWR{ID: 4, Opcode: verbs.OpSend, SGL: sge(src, 32, 64), Signaled: true})
	if wc := next(t, a.cq); wc.ID != 4 || wc.Status != verbs.StatusLocProtErr {
		t.Fatalf("completion %+v, want local protection error", wc)
	}

	a, b = pair(t, New(Options{}), New(Options{}))
	src = reg(t, a, 64, verbs.AccessLocalWrite)
	dst := reg(t, b, 64, verbs.AccessLocalWrite)
	b.qp.PostRecv(&verbs.RecvWR{ID: 6, SGL: sge(dst, 0, 8)})
	a.qp.PostSend(&verbs.SendWR{ID: 5, Opcode: verbs.OpSend, SGL: sge(src, 0, 32), Signaled: true})
	if wc := next(t, b.cq); wc.ID != 6 || wc.Status != verbs.StatusLocLenErr {
		t.Fatalf("receive completion %+v, want local length error", wc)
	}
	if wc := next(t, a.cq); wc.ID != 5 || wc.Status != verbs.StatusRemInvReqErr {
		t.Fatalf("send completion %+v, want remote invalid request", wc)
	}
}

func TestQPStateMachine(t *testing.T) {
	e := open(t, New(Options{}))
	if err := e.qp.Modify(verbs.QPAttr{State: verbs.QPRTS}); err == nil {
		t.Fatal("RESET -> RTS accepted")
	}
	if err := e.qp.PostSend(&verbs.SendWR{}); err == nil {
		t.Fatal("post send in RESET accepted")
	}
	if err := e.qp.Modify(verbs.QPAttr{State: verbs.QPInit, Port: 2}); err == nil {
		t.Fatal("INIT on port 2 accepted")
	}
	if err := e.qp.Modify(verbs.QPAttr{State: verbs.QPInit, Port: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.qp.Modify(verbs.QPAttr{State: verbs.QPRTR}); err == nil {
		t.Fatal("RTR without a remote address accepted")
	}
	if e.qp.State() != verbs.QPInit {
		t.Fatalf("state %s after failed transitions, want INIT", e.qp.State())
	}
}

func TestFaultHooks(t *testing.T) {
	t.Run("fail QP", func(t *testing.T) {
		pa := New(Options{Faults: Faults{FailQP: func(_ uint32, n uint64) bool { return n == 2 }}})
		a, b := pair(t, pa, New(Options{}))
		src := reg(t, a, 64, verbs.AccessLocalWrite)
		dst := reg(t, b, 64, verbs.AccessLocalWrite)
		for i := range 2 {
			b.qp.PostRecv(&verbs.RecvWR{ID: uint64(10 + i), SGL: sge(dst, 0, 64)})
			a.qp.PostSend(&verbs.SendWR{ID: uint64(i), Opcode: verbs.OpSend, SGL: sge(src, 0, 8), Signaled: true})
			if i == 0 {
				if wc := next(t, a.cq); wc.ID != 0 || wc.Status != verbs.StatusSuccess {
					t.Fatalf("first send %+v", wc)
				}
			}
		}
		if wc := next(t, a.cq); wc.ID != 1 || wc.Status != verbs.StatusFatalErr {
			t.Fatalf("second send %+v, want fatal error", wc)
		}
		next(t, b.cq) // the first message
		if wc := next(t, b.cq); wc.ID != 11 || wc.Status == verbs.StatusSuccess {
			t.Fatalf("peer's second receive %+v, want an error", wc)
		}
	})
	t.Run("drop completion", func(t *testing.T) {
		pa := New(Options{Faults: Faults{DropCompletion: func(wc verbs.WorkCompletion) bool { return wc.ID == 1 }}})
		a, b := pair(t, pa, New(Options{}))
		src := reg(t, a, 64, verbs.AccessLocalWrite)
		dst := reg(t, b, 64, verbs.AccessLocalWrite)
		for i := range 2 {
			b.qp.PostRecv(&verbs.RecvWR{ID: uint64(10 + i), SGL: sge(dst, 0, 64)})
			a.qp.PostSend(&verbs.SendWR{ID: uint64(i), Opcode: verbs.OpSend, SGL: sge(src, 0, 8), Signaled: true})
		}
		if wc := next(t, a.cq); wc.ID != 0 {
			t.Fatalf("first completion %+v", wc)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		a.cq.Wait(ctx)
		if n, _ := a.cq.Poll(make([]verbs.WorkCompletion, 4)); n != 0 {
			t.Fatalf("%d completions, want the second dropped", n)
		}
	})
	t.Run("slow peer", func(t *testing.T) {
		a, b := pair(t, New(Options{Faults: Faults{SendDelay: 50 * time.Millisecond}}), New(Options{}))
		src := reg(t, a, 64, verbs.AccessLocalWrite)
		dst := reg(t, b, 64, verbs.AccessLocalWrite)
		b.qp.PostRecv(&verbs.RecvWR{ID: 1, SGL: sge(dst, 0, 64)})
		start := time.Now()
		a.qp.PostSend(&verbs.SendWR{ID: 1, Opcode: verbs.OpSend, SGL: sge(src, 0, 8), Signaled: true})
		if wc := next(t, a.cq); wc.Status != verbs.StatusSuccess || time.Since(start) < 50*time.Millisecond {
			t.Fatalf("completion %+v after %v, want success after >= 50ms", wc, time.Since(start))
		}
	})
}

func TestKillErrorsPeerQP(t *testing.T) {
	pa := New(Options{})
	a, b := pair(t, pa, New(Options{}))
	dst := reg(t, b, 64, verbs.AccessLocalWrite)
	b.qp.PostRecv(&verbs.RecvWR{ID: 9, SGL: sge(dst, 0, 64)})
	pa.Kill()
	if wc := next(t, b.cq); wc.ID != 9 || wc.Status != verbs.StatusWRFlushErr {
		t.Fatalf("completion %+v, want flushed receive", wc)
	}
	if a.qp.State() != verbs.QPError || b.qp.State() != verbs.QPError {
		t.Fatalf("states %s %s", a.qp.State(), b.qp.State())
	}
}

func TestCQOverrun(t *testing.T) {
	p := New(Options{})
	a, b := pair(t, p, New(Options{}))
	small, _ := a.dev.CreateCQ(1)
	_ = small
	_ = b
	cq := small.(*cq)
	cq.push(verbs.WorkCompletion{ID: 1})
	cq.push(verbs.WorkCompletion{ID: 2})
	if _, err := cq.Poll(make([]verbs.WorkCompletion, 2)); err == nil {
		t.Fatal("overrun CQ polled without error")
	}
}
