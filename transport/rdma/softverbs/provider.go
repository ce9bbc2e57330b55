package softverbs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// DeviceName is the name of the single device a soft provider exposes.
const DeviceName = "soft0"

// Faults injects failures into a provider. Zero value: no faults.
type Faults struct {
	// DropCompletion is asked about every completion before it is queued;
	// returning true loses it silently (a dropped CQE).
	DropCompletion func(wc verbs.WorkCompletion) bool
	// FailQP is asked before a QP transmits its n-th request (n counts from
	// 1); returning true moves the QP to the error state instead, as a
	// fatal QP event would.
	FailQP func(qpn uint32, n uint64) bool
	// SendDelay is slept before every request is transmitted (a slow peer).
	SendDelay time.Duration
}

// Options configures a Provider.
type Options struct {
	Faults Faults
	// ConnectTimeout bounds how long a QP moving to RTS waits for its remote
	// QP to accept (the remote must reach RTR). Default 10 s.
	ConnectTimeout time.Duration
}

// Provider is the software verbs provider. It implements verbs.Provider.
type Provider struct {
	opts Options
	cut  atomic.Bool // Cut: the "cable" is pulled

	mu      sync.Mutex
	devices []*device
}

// New returns a software provider.
func New(opts Options) *Provider {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	return &Provider{opts: opts}
}

// Name implements verbs.Provider.
func (p *Provider) Name() string { return "soft" }

// Devices implements verbs.Provider: the soft provider always has one device.
func (p *Provider) Devices() ([]string, error) { return []string{DeviceName}, nil }

// Open implements verbs.Provider. Each Open starts a new device instance
// with its own listening port (its LID), as a separate HCA would be.
func (p *Provider) Open(name string) (verbs.Device, error) {
	if name != "" && name != DeviceName {
		return nil, fmt.Errorf("softverbs: open %q: %w (only %q exists)", name, verbs.ErrNoDevice, DeviceName)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("softverbs: open %s: %w", DeviceName, err)
	}
	d := &device{
		prov:     p,
		ln:       ln,
		lid:      uint16(ln.Addr().(*net.TCPAddr).Port),
		mrByL:    make(map[uint32]*mr),
		mrByR:    make(map[uint32]*mr),
		qps:      make(map[uint32]*qp),
		nextAddr: 0x10000,
		nextKey:  1,
		nextQPN:  0x100,
		conns:    make(map[net.Conn]struct{}),
	}
	p.mu.Lock()
	p.devices = append(p.devices, d)
	p.mu.Unlock()
	go d.acceptLoop()
	return d, nil
}

// Kill abruptly tears down every device this provider opened, as if the
// process had died: connections close without any goodbye, and local QPs
// move to the error state.
func (p *Provider) Kill() {
	p.mu.Lock()
	devs := append([]*device(nil), p.devices...)
	p.mu.Unlock()
	for _, d := range devs {
		_ = d.Close()
	}
}

// Cut pulls (true) or plugs back (false) the "cable" of every device
// this provider opened, as a dead link or a powered-off switch port
// would: while cut, its QPs transmit nothing and answer nothing, and
// their peers' requests wait unacknowledged. Nothing errors and nothing
// closes (hardware would only error once its retry counter ran out), so
// it is up to the transport to notice. Requests held meanwhile go out
// once the cable is back.
func (p *Provider) Cut(cut bool) { p.cut.Store(cut) }

// waitCable blocks while the provider is cut, or until q leaves
// states RTR/RTS; it reports whether q may go on.
func (q *qp) waitCable() bool {
	for q.dev.prov.cut.Load() {
		if st := q.State(); st != verbs.QPRTR && st != verbs.QPRTS {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// holdWhileCut waits while the provider is cut and q is usable: a lost
// connection is news that a cut cable does not carry.
func (q *qp) holdWhileCut() {
	for q.dev.prov.cut.Load() && !q.dev.isClosed() && q.State() != verbs.QPError {
		time.Sleep(5 * time.Millisecond)
	}
}

// gid is the GID every soft device reports: ::ffff:127.0.0.1.
var gid = func() verbs.GID {
	var g verbs.GID
	copy(g[:], net.ParseIP("127.0.0.1").To16())
	return g
}()

type device struct {
	prov *Provider
	ln   net.Listener
	lid  uint16

	mu       sync.Mutex
	closed   bool
	mrByL    map[uint32]*mr
	mrByR    map[uint32]*mr
	qps      map[uint32]*qp
	nextAddr uint64
	nextKey  uint32
	nextQPN  uint32
	conns    map[net.Conn]struct{} // accepted, not yet handed to a QP
}

func (d *device) Name() string { return DeviceName }

func (d *device) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func (d *device) QueryPort(port int) (verbs.PortAttr, error) {
	if port != 1 {
		return verbs.PortAttr{}, fmt.Errorf("softverbs: query port %d: device %s has only port 1", port, DeviceName)
	}
	return verbs.PortAttr{State: verbs.PortActive, ActiveMTU: verbs.MTU4096, LID: d.lid, LinkLayer: "InfiniBand"}, nil
}

func (d *device) QueryGID(port, index int) (verbs.GID, error) {
	if port != 1 || index != 0 {
		return verbs.GID{}, fmt.Errorf("softverbs: query GID port %d index %d: only port 1 index 0 exists", port, index)
	}
	return gid, nil
}

func (d *device) AllocPD() (verbs.PD, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("softverbs: alloc PD: device closed")
	}
	return &pd{dev: d}, nil
}

func (d *device) CreateCQ(depth int) (verbs.CQ, error) {
	if depth <= 0 {
		return nil, fmt.Errorf("softverbs: create CQ: depth %d must be positive", depth)
	}
	return &cq{depth: depth, notify: make(chan struct{}, 1), done: make(chan struct{}), drop: d.prov.opts.Faults.DropCompletion}, nil
}

// Close closes the listener and every QP (they move to the error state).
func (d *device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	qps := make([]*qp, 0, len(d.qps))
	for _, q := range d.qps {
		qps = append(qps, q)
	}
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	err := d.ln.Close()
	for _, q := range qps {
		q.fail(verbs.StatusFatalErr, "device closed")
		q.quiesce()
	}
	return err
}

// lookupLocal resolves a local key to its region in protection domain p.
func (d *device) lookupLocal(p *pd, key uint32) *mr {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.mrByL[key]
	if m == nil || m.pd != p {
		return nil
	}
	return m
}

func (d *device) lookupRemote(p *pd, key uint32) *mr {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.mrByR[key]
	if m == nil || m.pd != p {
		return nil
	}
	return m
}

// remoteAddr is the loopback address of the device behind a QPAddr.
func remoteAddr(a verbs.QPAddr) string {
	return net.JoinHostPort(net.IP(a.GID[:]).String(), strconv.Itoa(int(a.LID)))
}

type pd struct {
	dev *device
}

func (p *pd) RegMR(buf []byte, access verbs.Access) (verbs.MR, error) {
	if len(buf) == 0 {
		return nil, errors.New("softverbs: register MR: empty buffer")
	}
	d := p.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("softverbs: register MR: device closed")
	}
	m := &mr{pd: p, buf: buf, access: access, addr: d.nextAddr, lkey: d.nextKey<<8 | 0x11, rkey: d.nextKey<<8 | 0x22}
	d.nextKey++
	// Leave a guard gap so an off-by-one write never lands in a neighbour.
	d.nextAddr += (uint64(len(buf)) + 2*4096) &^ 4095
	d.mrByL[m.lkey] = m
	d.mrByR[m.rkey] = m
	return m, nil
}

func (p *pd) CreateQP(c verbs.QPCap, sendCQ, recvCQ verbs.CQ) (verbs.QP, error) {
	scq, ok1 := sendCQ.(*cq)
	rcq, ok2 := recvCQ.(*cq)
	if !ok1 || !ok2 {
		return nil, errors.New("softverbs: create QP: completion queues are not from the soft provider")
	}
	if c.MaxSendWR <= 0 || c.MaxRecvWR <= 0 {
		return nil, fmt.Errorf("softverbs: create QP: max send WR %d and max recv WR %d must be positive", c.MaxSendWR, c.MaxRecvWR)
	}
	d := p.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("softverbs: create QP: device closed")
	}
	q := &qp{dev: d, pd: p, num: d.nextQPN, cap: c, scq: scq, rcq: rcq, stateCh: make(chan struct{})}
	q.sqCond = sync.NewCond(&q.mu)
	d.nextQPN++
	d.qps[q.num] = q
	return q, nil
}

func (p *pd) Close() error { return nil }

type mr struct {
	pd         *pd
	buf        []byte
	access     verbs.Access
	addr       uint64
	lkey, rkey uint32
}

func (m *mr) Addr() uint64  { return m.addr }
func (m *mr) Len() int      { return len(m.buf) }
func (m *mr) LKey() uint32  { return m.lkey }
func (m *mr) RKey() uint32  { return m.rkey }
func (m *mr) Bytes() []byte { return m.buf }
func (m *mr) Deregister() error {
	d := m.pd.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mrByL[m.lkey] != m {
		return fmt.Errorf("softverbs: deregister MR lkey %#x: not registered", m.lkey)
	}
	delete(d.mrByL, m.lkey)
	delete(d.mrByR, m.rkey)
	return nil
}

// slice returns the bytes [addr, addr+n) of m, or nil when out of bounds.
func (m *mr) slice(addr uint64, n uint32) []byte {
	if addr < m.addr || addr-m.addr > uint64(len(m.buf)) || uint64(n) > uint64(len(m.buf))-(addr-m.addr) {
		return nil
	}
	off := addr - m.addr
	return m.buf[off : off+uint64(n) : off+uint64(n)]
}

// cq is a completion queue: a bounded FIFO with a wake-up channel.
type cq struct {
	depth  int
	drop   func(verbs.WorkCompletion) bool
	notify chan struct{} // one token: "something was pushed"
	done   chan struct{} // closed by Close

	mu      sync.Mutex
	q       []verbs.WorkCompletion
	overrun bool
	closed  bool
}

func (c *cq) push(wc verbs.WorkCompletion) {
	if c.drop != nil && c.drop(wc) {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.q) >= c.depth {
		c.overrun = true
	} else {
		c.q = append(c.q, wc)
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *cq) Poll(wc []verbs.WorkCompletion) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.overrun {
		return 0, fmt.Errorf("softverbs: CQ overrun (more than %d completions outstanding)", c.depth)
	}
	n := copy(wc, c.q)
	c.q = c.q[:copy(c.q, c.q[n:])]
	return n, nil
}

func (c *cq) Wait(ctx context.Context) error {
	c.mu.Lock()
	ready := len(c.q) > 0 || c.overrun
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("softverbs: CQ closed")
	}
	if ready {
		return nil
	}
	select {
	case <-c.notify:
		return nil
	case <-c.done:
		return errors.New("softverbs: CQ closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *cq) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}
