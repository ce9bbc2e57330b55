package rdma

import (
	"encoding/binary"

	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// Message kinds of an eager (SEND) message.
const (
	kindData   = 1 // header + payload: a whole small message
	kindRTS    = 2 // request to send: a large message of len bytes, token tok
	kindCTS    = 3 // clear to send: write tok's message to (addr, rkey), immediate rtok
	kindCredit = 4 // only the posted count
)

// CTS status values.
const (
	ctsOK       = 0
	ctsMismatch = 1 // the receiver's buffer has another size: drop the message
)

// hdrLen is the eager header size. Layout (little endian):
//
//	0 kind u8 | 1 status u8 | 2 pad u16 | 4 tok u32 | 8 posted u64 |
//	16 tag u64 | 24 len u64 | 32 addr u64 | 40 rkey u32 | 44 rtok u32
const hdrLen = 48

type header struct {
	kind, status byte
	tok          uint32
	posted       uint64
	tag          transport.Tag
	len          uint64
	addr         uint64
	rkey         uint32
	rtok         uint32
}

func (h *header) encode(b []byte) {
	_ = b[hdrLen-1]
	clear(b[:hdrLen])
	b[0], b[1] = h.kind, h.status
	binary.LittleEndian.PutUint32(b[4:], h.tok)
	binary.LittleEndian.PutUint64(b[8:], h.posted)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.tag))
	binary.LittleEndian.PutUint64(b[24:], h.len)
	binary.LittleEndian.PutUint64(b[32:], h.addr)
	binary.LittleEndian.PutUint32(b[40:], h.rkey)
	binary.LittleEndian.PutUint32(b[44:], h.rtok)
}

func decodeHeader(b []byte) header {
	return header{
		kind: b[0], status: b[1],
		tok:    binary.LittleEndian.Uint32(b[4:]),
		posted: binary.LittleEndian.Uint64(b[8:]),
		tag:    transport.Tag(binary.LittleEndian.Uint64(b[16:])),
		len:    binary.LittleEndian.Uint64(b[24:]),
		addr:   binary.LittleEndian.Uint64(b[32:]),
		rkey:   binary.LittleEndian.Uint32(b[40:]),
		rtok:   binary.LittleEndian.Uint32(b[44:]),
	}
}

// qpAddrLen is the encoded size of a verbs.QPAddr in the rendezvous store.
const qpAddrLen = 2 + 16 + 4 + 4 + 1

func encodeQPAddr(a verbs.QPAddr) []byte {
	b := make([]byte, qpAddrLen)
	binary.LittleEndian.PutUint16(b[0:], a.LID)
	copy(b[2:18], a.GID[:])
	binary.LittleEndian.PutUint32(b[18:], a.QPN)
	binary.LittleEndian.PutUint32(b[22:], a.PSN)
	b[26] = byte(a.MTU)
	return b
}

func decodeQPAddr(b []byte) (verbs.QPAddr, bool) {
	if len(b) != qpAddrLen {
		return verbs.QPAddr{}, false
	}
	var a verbs.QPAddr
	a.LID = binary.LittleEndian.Uint16(b[0:])
	copy(a.GID[:], b[2:18])
	a.QPN = binary.LittleEndian.Uint32(b[18:])
	a.PSN = binary.LittleEndian.Uint32(b[22:])
	a.MTU = verbs.MTU(b[26])
	return a, true
}

// Work request IDs: peer rank in the top 16 bits, kind in the next 8,
// a slot index or token in the low 40.
const (
	wrRecv  = 1
	wrEager = 2
	wrWrite = 3
)

func wrID(peer int, kind int, low uint64) uint64 {
	return uint64(peer)<<48 | uint64(kind)<<40 | low&(1<<40-1)
}

func splitWRID(id uint64) (peer, kind int, low uint64) {
	return int(id >> 48), int(id >> 40 & 0xff), id & (1<<40 - 1)
}
