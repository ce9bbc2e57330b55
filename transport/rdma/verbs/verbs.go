package verbs

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoDevice reports that no usable RDMA device exists (no library, no
// kernel support, or an empty device list). Callers test it with errors.Is
// to fall back to another transport.
var ErrNoDevice = errors.New("no RDMA device")

// Provider is a verbs implementation: libibverbs or the software provider.
type Provider interface {
	// Name identifies the provider ("soft", "ibverbs").
	Name() string
	// Devices lists the device names; an empty list is reported as an
	// error wrapping ErrNoDevice.
	Devices() ([]string, error)
	// Open opens a device by name; "" opens the first one.
	Open(name string) (Device, error)
}

// Device is an open RDMA device (ibv_context).
type Device interface {
	Name() string
	// QueryPort returns the attributes of a physical port (1-based).
	QueryPort(port int) (PortAttr, error)
	// QueryGID returns the GID at index of a port.
	QueryGID(port, index int) (GID, error)
	AllocPD() (PD, error)
	// CreateCQ creates a completion queue holding at least depth entries.
	CreateCQ(depth int) (CQ, error)
	Close() error
}

// GID is a 128-bit global identifier (an IPv6 address for RoCE).
type GID [16]byte

// MTU is a path MTU code, as in enum ibv_mtu.
type MTU int

const (
	MTU256  MTU = 1
	MTU512  MTU = 2
	MTU1024 MTU = 3
	MTU2048 MTU = 4
	MTU4096 MTU = 5
)

// Bytes is the MTU in bytes (0 for an unknown code).
func (m MTU) Bytes() int {
	if m < MTU256 || m > MTU4096 {
		return 0
	}
	return 128 << int(m)
}

// PortState mirrors enum ibv_port_state.
type PortState int

const (
	PortDown   PortState = 1
	PortInit   PortState = 2
	PortArmed  PortState = 3
	PortActive PortState = 4
)

// PortAttr is the subset of ibv_port_attr the transport needs.
type PortAttr struct {
	State     PortState
	ActiveMTU MTU
	LID       uint16
	// LinkLayer is "InfiniBand" or "Ethernet" (RoCE, needs a GID).
	LinkLayer string
}

// Access flags for memory regions and queue pairs (enum ibv_access_flags).
type Access int

const (
	AccessLocalWrite  Access = 1
	AccessRemoteWrite Access = 2
	AccessRemoteRead  Access = 4
)

// PD is a protection domain: memory regions and queue pairs created in one
// PD can only be used together.
type PD interface {
	// RegMR registers buf for DMA. The memory must stay valid (and, for
	// Go memory, referenced) until Deregister.
	RegMR(buf []byte, access Access) (MR, error)
	// CreateQP creates a reliable-connected queue pair in state RESET.
	CreateQP(cap QPCap, sendCQ, recvCQ CQ) (QP, error)
	Close() error
}

// MR is a registered memory region.
type MR interface {
	Addr() uint64 // address of the first byte, as work requests name it
	Len() int
	LKey() uint32 // key for local work requests
	RKey() uint32 // key a remote peer uses in RDMA WRITE
	// Bytes is the registered memory.
	Bytes() []byte
	Deregister() error
}

// QPCap sizes a queue pair's work queues.
type QPCap struct {
	MaxSendWR, MaxRecvWR   int
	MaxSendSGE, MaxRecvSGE int
}

// QPState mirrors enum ibv_qp_state.
type QPState int

const (
	QPReset QPState = 0
	QPInit  QPState = 1
	QPRTR   QPState = 2
	QPRTS   QPState = 3
	QPSQD   QPState = 4
	QPSQE   QPState = 5
	QPError QPState = 6
)

func (s QPState) String() string {
	switch s {
	case QPReset:
		return "RESET"
	case QPInit:
		return "INIT"
	case QPRTR:
		return "RTR"
	case QPRTS:
		return "RTS"
	case QPSQD:
		return "SQD"
	case QPSQE:
		return "SQE"
	case QPError:
		return "ERR"
	}
	return fmt.Sprintf("QPState(%d)", int(s))
}

// QPAddr is what a peer needs to connect to a queue pair: the fields two
// ranks exchange through the rendezvous store.
type QPAddr struct {
	LID uint16
	GID GID
	QPN uint32
	PSN uint32 // first packet sequence number this QP will send
	MTU MTU
}

// QPAttr is the argument of Modify. Only the fields the target state needs
// are read (as with ibv_modify_qp's attribute mask):
//
//	INIT: Port, Access
//	RTR:  Remote (LID/GID, QPN, PSN = the remote's send PSN), MTU, GIDIndex
//	RTS:  PSN (own send PSN), Timeout, RetryCount, RNRRetry
type QPAttr struct {
	State    QPState
	Port     int
	Access   Access
	Remote   QPAddr
	MTU      MTU
	GIDIndex int
	PSN      uint32
	// Timeout is the IB local ACK timeout exponent (4.096 us * 2^Timeout).
	Timeout    int
	RetryCount int
	// RNRRetry is how often a receiver-not-ready NAK is retried (7 = forever).
	RNRRetry int
}

// QP is a reliable-connected queue pair.
type QP interface {
	Num() uint32
	State() QPState
	// Modify moves the QP to attr.State; only legal transitions succeed.
	Modify(attr QPAttr) error
	PostSend(wr *SendWR) error
	PostRecv(wr *RecvWR) error
	Close() error
}

// SGE is one scatter/gather element: Length bytes at Addr inside the
// region whose local key is LKey.
type SGE struct {
	Addr   uint64
	Length uint32
	LKey   uint32
}

// Opcode of a send work request (enum ibv_wr_opcode).
type Opcode int

const (
	OpRDMAWrite        Opcode = 0
	OpRDMAWriteWithImm Opcode = 1
	OpSend             Opcode = 2
	OpSendWithImm      Opcode = 3
)

func (o Opcode) String() string {
	switch o {
	case OpRDMAWrite:
		return "RDMA write"
	case OpRDMAWriteWithImm:
		return "RDMA write with immediate"
	case OpSend:
		return "send"
	case OpSendWithImm:
		return "send with immediate"
	}
	return fmt.Sprintf("Opcode(%d)", int(o))
}

// SendWR is a send-queue work request.
type SendWR struct {
	ID       uint64
	Opcode   Opcode
	SGL      []SGE
	Imm      uint32 // for the WithImm opcodes
	Signaled bool   // produce a completion on success
	// RemoteAddr and RKey name the target of an RDMA write.
	RemoteAddr uint64
	RKey       uint32
}

// RecvWR is a receive-queue work request.
type RecvWR struct {
	ID  uint64
	SGL []SGE
}

// WCOpcode is the kind of a completion (enum ibv_wc_opcode).
type WCOpcode int

const (
	WCSend            WCOpcode = 0
	WCRDMAWrite       WCOpcode = 1
	WCRecv            WCOpcode = 128
	WCRecvRDMAWithImm WCOpcode = 129
)

func (o WCOpcode) String() string {
	switch o {
	case WCSend:
		return "send"
	case WCRDMAWrite:
		return "RDMA write"
	case WCRecv:
		return "receive"
	case WCRecvRDMAWithImm:
		return "receive of RDMA write with immediate"
	}
	return fmt.Sprintf("WCOpcode(%d)", int(o))
}

// WorkCompletion is one completion queue entry (struct ibv_wc).
type WorkCompletion struct {
	ID      uint64
	Status  Status
	Opcode  WCOpcode
	QPN     uint32
	ByteLen uint32
	Imm     uint32
	HasImm  bool
}

// CQ is a completion queue.
type CQ interface {
	// Poll copies up to len(wc) completions into wc without blocking.
	Poll(wc []WorkCompletion) (int, error)
	// Wait blocks until the CQ may hold a completion, ctx ends, or the CQ
	// is closed. It may return spuriously; callers Poll afterwards.
	Wait(ctx context.Context) error
	Close() error
}
