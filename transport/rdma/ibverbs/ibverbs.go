//go:build rdma && cgo

package ibverbs

/*
#cgo LDFLAGS: -libverbs
#include <infiniband/verbs.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

// ---- wrappers for macros and static inline functions ----

static int strand_query_port(struct ibv_context *ctx, uint8_t port, struct ibv_port_attr *attr) {
	return ibv_query_port(ctx, port, attr);
}

static struct ibv_mr *strand_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access) {
	return ibv_reg_mr(pd, addr, len, access);
}

// get_device_list reports errno separately: NULL with ENOSYS means the
// kernel has no RDMA support.
static struct ibv_device **strand_get_device_list(int *num, int *err) {
	errno = 0;
	struct ibv_device **l = ibv_get_device_list(num);
	*err = errno;
	return l;
}

static struct ibv_device *strand_device_at(struct ibv_device **l, int i) { return l[i]; }

static struct ibv_qp *strand_create_rc_qp(struct ibv_pd *pd, struct ibv_cq *scq, struct ibv_cq *rcq,
		uint32_t max_send_wr, uint32_t max_recv_wr, uint32_t max_send_sge, uint32_t max_recv_sge) {
	struct ibv_qp_init_attr a;
	memset(&a, 0, sizeof a);
	a.send_cq = scq;
	a.recv_cq = rcq;
	a.cap.max_send_wr = max_send_wr;
	a.cap.max_recv_wr = max_recv_wr;
	a.cap.max_send_sge = max_send_sge;
	a.cap.max_recv_sge = max_recv_sge;
	a.qp_type = IBV_QPT_RC;
	a.sq_sig_all = 0;
	return ibv_create_qp(pd, &a);
}

static int strand_qp_init(struct ibv_qp *qp, uint8_t port, int access) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_INIT;
	a.pkey_index = 0;
	a.port_num = port;
	a.qp_access_flags = access;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

static int strand_qp_rtr(struct ibv_qp *qp, uint8_t port, int mtu, uint32_t dest_qpn, uint32_t rq_psn,
		uint16_t dlid, const uint8_t *dgid, int global, int sgid_index) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = mtu;
	a.dest_qp_num = dest_qpn;
	a.rq_psn = rq_psn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.dlid = dlid;
	a.ah_attr.sl = 0;
	a.ah_attr.src_path_bits = 0;
	a.ah_attr.port_num = port;
	if (global) {
		a.ah_attr.is_global = 1;
		memcpy(a.ah_attr.grh.dgid.raw, dgid, 16);
		a.ah_attr.grh.sgid_index = sgid_index;
		a.ah_attr.grh.hop_limit = 1;
	}
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
		IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

static int strand_qp_rts(struct ibv_qp *qp, uint32_t sq_psn, int timeout, int retry_cnt, int rnr_retry) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTS;
	a.sq_psn = sq_psn;
	a.timeout = timeout;
	a.retry_cnt = retry_cnt;
	a.rnr_retry = rnr_retry;
	a.max_rd_atomic = 1;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
		IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC);
}

static int strand_qp_err(struct ibv_qp *qp) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_ERR;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE);
}

static int strand_qp_state(struct ibv_qp *qp) {
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;
	if (ibv_query_qp(qp, &a, IBV_QP_STATE, &ia)) return -1;
	return a.qp_state;
}

static int strand_post_send(struct ibv_qp *qp, uint64_t wr_id, int opcode, struct ibv_sge *sges, int nsge,
		uint32_t imm, int signaled, uint64_t raddr, uint32_t rkey) {
	struct ibv_send_wr wr, *bad = NULL;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = wr_id;
	wr.opcode = opcode;
	wr.sg_list = nsge > 0 ? sges : NULL;
	wr.num_sge = nsge;
	wr.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
	wr.imm_data = htonl(imm);
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	return ibv_post_send(qp, &wr, &bad);
}

static int strand_post_recv(struct ibv_qp *qp, uint64_t wr_id, struct ibv_sge *sges, int nsge) {
	struct ibv_recv_wr wr, *bad = NULL;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = wr_id;
	wr.sg_list = nsge > 0 ? sges : NULL;
	wr.num_sge = nsge;
	return ibv_post_recv(qp, &wr, &bad);
}

// strand_wc is ibv_wc without the union, imm in host order.
typedef struct {
	uint64_t wr_id;
	int32_t status, opcode;
	uint32_t qp_num, byte_len, imm, has_imm;
} strand_wc;

enum { STRAND_POLL_MAX = 64 };

static int strand_poll_cq(struct ibv_cq *cq, int n, strand_wc *out) {
	struct ibv_wc wc[STRAND_POLL_MAX];
	if (n > STRAND_POLL_MAX) n = STRAND_POLL_MAX;
	int got = ibv_poll_cq(cq, n, wc);
	for (int i = 0; i < got; i++) {
		out[i].wr_id = wc[i].wr_id;
		out[i].status = wc[i].status;
		out[i].opcode = wc[i].opcode;
		out[i].qp_num = wc[i].qp_num;
		out[i].byte_len = wc[i].byte_len;
		out[i].has_imm = (wc[i].wc_flags & IBV_WC_WITH_IMM) != 0;
		out[i].imm = out[i].has_imm ? ntohl(wc[i].imm_data) : 0;
	}
	return got;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// Provider is the libibverbs verbs.Provider.
type Provider struct{}

// New returns the libibverbs provider.
func New() *Provider { return &Provider{} }

// Name implements verbs.Provider.
func (*Provider) Name() string { return "ibverbs" }

// deviceList returns the devices and a function freeing the list.
func deviceList() ([]*C.struct_ibv_device, func(), error) {
	var n, errno C.int
	list := C.strand_get_device_list(&n, &errno)
	if list == nil {
		e := syscall.Errno(errno)
		if e == syscall.ENOSYS || e == 0 {
			return nil, nil, fmt.Errorf("%w: the kernel has no RDMA support (ibv_get_device_list: %v)", verbs.ErrNoDevice, e)
		}
		return nil, nil, fmt.Errorf("%w: ibv_get_device_list: %v", verbs.ErrNoDevice, e)
	}
	free := func() { C.ibv_free_device_list(list) }
	if n == 0 {
		free()
		return nil, nil, fmt.Errorf("%w: libibverbs found no devices", verbs.ErrNoDevice)
	}
	devs := make([]*C.struct_ibv_device, n)
	for i := range devs {
		devs[i] = C.strand_device_at(list, C.int(i))
	}
	return devs, free, nil
}

// Devices implements verbs.Provider.
func (*Provider) Devices() ([]string, error) {
	devs, free, err := deviceList()
	if err != nil {
		return nil, err
	}
	defer free()
	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = C.GoString(C.ibv_get_device_name(d))
	}
	return names, nil
}

// Open implements verbs.Provider.
func (*Provider) Open(name string) (verbs.Device, error) {
	devs, free, err := deviceList()
	if err != nil {
		return nil, err
	}
	defer free()
	for _, d := range devs {
		n := C.GoString(C.ibv_get_device_name(d))
		if name != "" && n != name {
			continue
		}
		ctx, err := C.ibv_open_device(d)
		if ctx == nil {
			return nil, fmt.Errorf("ibverbs: open %s: %v", n, err)
		}
		return &device{ctx: ctx, name: n}, nil
	}
	return nil, fmt.Errorf("%w: no device named %q", verbs.ErrNoDevice, name)
}

type device struct {
	ctx  *C.struct_ibv_context
	name string
}

func (d *device) Name() string { return d.name }

func (d *device) QueryPort(port int) (verbs.PortAttr, error) {
	var a C.struct_ibv_port_attr
	if rc := C.strand_query_port(d.ctx, C.uint8_t(port), &a); rc != 0 {
		return verbs.PortAttr{}, fmt.Errorf("ibverbs: query %s port %d: %v", d.name, port, syscall.Errno(rc))
	}
	ll := "InfiniBand"
	if a.link_layer == C.IBV_LINK_LAYER_ETHERNET {
		ll = "Ethernet"
	}
	return verbs.PortAttr{State: verbs.PortState(a.state), ActiveMTU: verbs.MTU(a.active_mtu), LID: uint16(a.lid), LinkLayer: ll}, nil
}

func (d *device) QueryGID(port, index int) (verbs.GID, error) {
	var g C.union_ibv_gid
	if rc, err := C.ibv_query_gid(d.ctx, C.uint8_t(port), C.int(index), &g); rc != 0 {
		return verbs.GID{}, fmt.Errorf("ibverbs: query %s port %d GID %d: %v", d.name, port, index, err)
	}
	var out verbs.GID
	copy(out[:], C.GoBytes(unsafe.Pointer(&g), 16))
	return out, nil
}

func (d *device) AllocPD() (verbs.PD, error) {
	pd, err := C.ibv_alloc_pd(d.ctx)
	if pd == nil {
		return nil, fmt.Errorf("ibverbs: alloc PD on %s: %v", d.name, err)
	}
	return &protDomain{pd: pd}, nil
}

func (d *device) CreateCQ(depth int) (verbs.CQ, error) {
	cq, err := C.ibv_create_cq(d.ctx, C.int(depth), nil, nil, 0)
	if cq == nil {
		return nil, fmt.Errorf("ibverbs: create CQ of %d on %s: %v", depth, d.name, err)
	}
	return &compQueue{cq: cq}, nil
}

func (d *device) Close() error {
	if rc := C.ibv_close_device(d.ctx); rc != 0 {
		return fmt.Errorf("ibverbs: close %s: %v", d.name, syscall.Errno(rc))
	}
	return nil
}

type protDomain struct {
	pd *C.struct_ibv_pd
}

func (p *protDomain) RegMR(buf []byte, access verbs.Access) (verbs.MR, error) {
	if len(buf) == 0 {
		return nil, errors.New("ibverbs: register MR: empty buffer")
	}
	m := &memRegion{buf: buf}
	m.pin.Pin(&buf[0]) // the NIC keeps the address: pin it for cgo's rules
	mr, err := C.strand_reg_mr(p.pd, unsafe.Pointer(&buf[0]), C.size_t(len(buf)), C.int(access))
	if mr == nil {
		m.pin.Unpin()
		return nil, fmt.Errorf("ibverbs: register %d bytes: %v", len(buf), err)
	}
	m.mr = mr
	return m, nil
}

func (p *protDomain) CreateQP(c verbs.QPCap, sendCQ, recvCQ verbs.CQ) (verbs.QP, error) {
	s, ok1 := sendCQ.(*compQueue)
	r, ok2 := recvCQ.(*compQueue)
	if !ok1 || !ok2 {
		return nil, errors.New("ibverbs: create QP: completion queues are not from libibverbs")
	}
	qp, err := C.strand_create_rc_qp(p.pd, s.cq, r.cq, C.uint32_t(c.MaxSendWR), C.uint32_t(c.MaxRecvWR),
		C.uint32_t(max(1, c.MaxSendSGE)), C.uint32_t(max(1, c.MaxRecvSGE)))
	if qp == nil {
		return nil, fmt.Errorf("ibverbs: create RC QP: %v", err)
	}
	return &queuePair{qp: qp}, nil
}

func (p *protDomain) Close() error {
	if rc := C.ibv_dealloc_pd(p.pd); rc != 0 {
		return fmt.Errorf("ibverbs: dealloc PD: %v", syscall.Errno(rc))
	}
	return nil
}

type memRegion struct {
	mr  *C.struct_ibv_mr
	buf []byte
	pin runtime.Pinner
}

func (m *memRegion) Addr() uint64  { return uint64(uintptr(m.mr.addr)) }
func (m *memRegion) Len() int      { return len(m.buf) }
func (m *memRegion) LKey() uint32  { return uint32(m.mr.lkey) }
func (m *memRegion) RKey() uint32  { return uint32(m.mr.rkey) }
func (m *memRegion) Bytes() []byte { return m.buf }

func (m *memRegion) Deregister() error {
	if m.mr == nil {
		return errors.New("ibverbs: deregister: not registered")
	}
	if rc := C.ibv_dereg_mr(m.mr); rc != 0 {
		return fmt.Errorf("ibverbs: deregister MR: %v", syscall.Errno(rc))
	}
	m.mr = nil
	m.pin.Unpin()
	return nil
}

type queuePair struct {
	qp *C.struct_ibv_qp

	mu   sync.Mutex
	port int
}

func (q *queuePair) Num() uint32 { return uint32(q.qp.qp_num) }

func (q *queuePair) State() verbs.QPState {
	s := C.strand_qp_state(q.qp)
	if s < 0 {
		return verbs.QPError
	}
	return verbs.QPState(s)
}

func (q *queuePair) Modify(a verbs.QPAttr) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var rc C.int
	switch a.State {
	case verbs.QPInit:
		q.port = a.Port
		rc = C.strand_qp_init(q.qp, C.uint8_t(a.Port), C.int(a.Access))
	case verbs.QPRTR:
		var zero verbs.GID
		global := 0
		if a.Remote.GID != zero {
			global = 1
		}
		gid := a.Remote.GID
		rc = C.strand_qp_rtr(q.qp, C.uint8_t(q.port), C.int(a.MTU), C.uint32_t(a.Remote.QPN), C.uint32_t(a.Remote.PSN),
			C.uint16_t(a.Remote.LID), (*C.uint8_t)(unsafe.Pointer(&gid[0])), C.int(global), C.int(a.GIDIndex))
	case verbs.QPRTS:
		rc = C.strand_qp_rts(q.qp, C.uint32_t(a.PSN), C.int(a.Timeout), C.int(a.RetryCount), C.int(a.RNRRetry))
	case verbs.QPError:
		rc = C.strand_qp_err(q.qp)
	default:
		return fmt.Errorf("ibverbs: modify QP %d to %s: unsupported target state", q.Num(), a.State)
	}
	if rc != 0 {
		return fmt.Errorf("ibverbs: modify QP %d to %s: %v", q.Num(), a.State, syscall.Errno(rc))
	}
	return nil
}

func sges(s []verbs.SGE) []C.struct_ibv_sge {
	out := make([]C.struct_ibv_sge, len(s))
	for i, e := range s {
		out[i].addr = C.uint64_t(e.Addr)
		out[i].length = C.uint32_t(e.Length)
		out[i].lkey = C.uint32_t(e.LKey)
	}
	return out
}

func (q *queuePair) PostSend(wr *verbs.SendWR) error {
	var op C.int
	switch wr.Opcode {
	case verbs.OpRDMAWrite:
		op = C.IBV_WR_RDMA_WRITE
	case verbs.OpRDMAWriteWithImm:
		op = C.IBV_WR_RDMA_WRITE_WITH_IMM
	case verbs.OpSend:
		op = C.IBV_WR_SEND
	case verbs.OpSendWithImm:
		op = C.IBV_WR_SEND_WITH_IMM
	default:
		return fmt.Errorf("ibverbs: post send: unknown opcode %d", wr.Opcode)
	}
	sg := sges(wr.SGL)
	var sp *C.struct_ibv_sge
	if len(sg) > 0 {
		sp = &sg[0]
	}
	signaled := 0
	if wr.Signaled {
		signaled = 1
	}
	if rc := C.strand_post_send(q.qp, C.uint64_t(wr.ID), op, sp, C.int(len(sg)), C.uint32_t(wr.Imm), C.int(signaled),
		C.uint64_t(wr.RemoteAddr), C.uint32_t(wr.RKey)); rc != 0 {
		return fmt.Errorf("ibverbs: post send on QP %d: %v", q.Num(), syscall.Errno(rc))
	}
	return nil
}

func (q *queuePair) PostRecv(wr *verbs.RecvWR) error {
	sg := sges(wr.SGL)
	var sp *C.struct_ibv_sge
	if len(sg) > 0 {
		sp = &sg[0]
	}
	if rc := C.strand_post_recv(q.qp, C.uint64_t(wr.ID), sp, C.int(len(sg))); rc != 0 {
		return fmt.Errorf("ibverbs: post recv on QP %d: %v", q.Num(), syscall.Errno(rc))
	}
	return nil
}

func (q *queuePair) Close() error {
	if rc := C.ibv_destroy_qp(q.qp); rc != 0 {
		return fmt.Errorf("ibverbs: destroy QP: %v", syscall.Errno(rc))
	}
	return nil
}

type compQueue struct {
	cq   *C.struct_ibv_cq
	idle atomic.Int64 // consecutive empty polls, for Wait's backoff
}

func (c *compQueue) Poll(wc []verbs.WorkCompletion) (int, error) {
	if len(wc) == 0 {
		return 0, nil
	}
	var buf [C.STRAND_POLL_MAX]C.strand_wc
	n := C.strand_poll_cq(c.cq, C.int(min(len(wc), len(buf))), &buf[0])
	if n < 0 {
		return 0, fmt.Errorf("ibverbs: poll CQ: error %d", int(n))
	}
	if n == 0 {
		c.idle.Add(1)
	} else {
		c.idle.Store(0)
	}
	for i := range int(n) {
		w := &buf[i]
		wc[i] = verbs.WorkCompletion{ID: uint64(w.wr_id), Status: verbs.Status(w.status), Opcode: verbs.WCOpcode(w.opcode),
			QPN: uint32(w.qp_num), ByteLen: uint32(w.byte_len), Imm: uint32(w.imm), HasImm: w.has_imm != 0}
	}
	return int(n), nil
}

// Wait backs off between polls: completions are found by polling, as RDMA
// libraries do on the fast path. Right after traffic it only yields the
// processor (a completion is likely within microseconds); after a longer
// idle spell it sleeps, up to 1 ms, so an idle transport costs no core.
// (A completion channel, ibv_req_notify_cq, would save the CPU at the cost
// of an interrupt's latency.)
func (c *compQueue) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch idle := c.idle.Load(); {
	case idle < 1000:
		runtime.Gosched()
	case idle < 2000:
		time.Sleep(50 * time.Microsecond)
	default:
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (c *compQueue) Close() error {
	if rc := C.ibv_destroy_cq(c.cq); rc != 0 {
		return fmt.Errorf("ibverbs: destroy CQ: %v", syscall.Errno(rc))
	}
	return nil
}

var _ verbs.Provider = (*Provider)(nil)

// constantMismatches lists the verbs package constants that differ from
// libibverbs' own (the Go side mirrors the C enums by value).
func constantMismatches() []string {
	pairs := []struct {
		name   string
		gv, cv int
	}{
		{"IBV_WC_SUCCESS", int(verbs.StatusSuccess), int(C.IBV_WC_SUCCESS)},
		{"IBV_WC_LOC_LEN_ERR", int(verbs.StatusLocLenErr), int(C.IBV_WC_LOC_LEN_ERR)},
		{"IBV_WC_LOC_PROT_ERR", int(verbs.StatusLocProtErr), int(C.IBV_WC_LOC_PROT_ERR)},
		{"IBV_WC_WR_FLUSH_ERR", int(verbs.StatusWRFlushErr), int(C.IBV_WC_WR_FLUSH_ERR)},
		{"IBV_WC_REM_INV_REQ_ERR", int(verbs.StatusRemInvReqErr), int(C.IBV_WC_REM_INV_REQ_ERR)},
		{"IBV_WC_REM_ACCESS_ERR", int(verbs.StatusRemAccessErr), int(C.IBV_WC_REM_ACCESS_ERR)},
		{"IBV_WC_RETRY_EXC_ERR", int(verbs.StatusRetryExcErr), int(C.IBV_WC_RETRY_EXC_ERR)},
		{"IBV_WC_RNR_RETRY_EXC_ERR", int(verbs.StatusRNRRetryExcErr), int(C.IBV_WC_RNR_RETRY_EXC_ERR)},
		{"IBV_WC_FATAL_ERR", int(verbs.StatusFatalErr), int(C.IBV_WC_FATAL_ERR)},
		{"IBV_WC_GENERAL_ERR", int(verbs.StatusGeneralErr), int(C.IBV_WC_GENERAL_ERR)},
		{"IBV_WC_SEND", int(verbs.WCSend), int(C.IBV_WC_SEND)},
		{"IBV_WC_RDMA_WRITE", int(verbs.WCRDMAWrite), int(C.IBV_WC_RDMA_WRITE)},
		{"IBV_WC_RECV", int(verbs.WCRecv), int(C.IBV_WC_RECV)},
		{"IBV_WC_RECV_RDMA_WITH_IMM", int(verbs.WCRecvRDMAWithImm), int(C.IBV_WC_RECV_RDMA_WITH_IMM)},
		{"IBV_QPS_RESET", int(verbs.QPReset), int(C.IBV_QPS_RESET)},
		{"IBV_QPS_RTS", int(verbs.QPRTS), int(C.IBV_QPS_RTS)},
		{"IBV_QPS_ERR", int(verbs.QPError), int(C.IBV_QPS_ERR)},
		{"IBV_PORT_ACTIVE", int(verbs.PortActive), int(C.IBV_PORT_ACTIVE)},
		{"IBV_MTU_1024", int(verbs.MTU1024), int(C.IBV_MTU_1024)},
		{"IBV_MTU_4096", int(verbs.MTU4096), int(C.IBV_MTU_4096)},
		{"IBV_ACCESS_LOCAL_WRITE", int(verbs.AccessLocalWrite), int(C.IBV_ACCESS_LOCAL_WRITE)},
		{"IBV_ACCESS_REMOTE_WRITE", int(verbs.AccessRemoteWrite), int(C.IBV_ACCESS_REMOTE_WRITE)},
		{"IBV_ACCESS_REMOTE_READ", int(verbs.AccessRemoteRead), int(C.IBV_ACCESS_REMOTE_READ)},
	}
	var bad []string
	for _, p := range pairs {
		if p.gv != p.cv {
			bad = append(bad, fmt.Sprintf("%s: Go %d, C %d", p.name, p.gv, p.cv))
		}
	}
	return bad
}
