package shm

import (
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// A segment is shared by one pair of ranks lo < hi. Layout (page-aligned
// parts, every word written by one side only):
//
//	[0, 4096)            header: magic, ring capacity, job hash, ranks, pids,
//	                     the doorbell secret, each side's state and culprit
//	[4096, 8192)         control of ring 0 (lo -> hi)
//	[8192, 12288)        control of ring 1 (hi -> lo)
//	[12288, +cap)        ring 0's bytes
//	[12288+cap, +cap)    ring 1's bytes
//
// A ring's control words sit on separate cache lines: head (bytes
// published by the writer), tail (bytes consumed by the reader), the
// number of readers and writers parked waiting for them (so the other
// side rings the doorbell only when someone waits).
const (
	headerBytes = 4096
	ctlBytes    = 4096
	dataOff     = headerBytes + 2*ctlBytes
	magic       = 0x7374726e_64736d31 // "strndsm1"

	offMagic  = 0
	offCap    = 8
	offJob    = 16  // 32 bytes
	offRanks  = 48  // lo, hi uint32
	offPids   = 56  // lo, hi uint32
	offSecret = 64  // 32 bytes: proves to the creator's doorbell that the peer mapped the segment
	offState  = 128 // + 64*side: state uint32, culprit int32
	offHead   = 0
	offRxWait = 64
	offTail   = 128
	offTxWait = 192
)

// Side states.
const (
	stateAlive   = 0
	stateLeft    = 1 // closed cleanly (goodbye)
	stateCrashed = 2 // aborted: peers treat it as a failure
)

func segmentSize(ringCap int) int { return dataOff + 2*ringCap }

func jobHash(job string) [32]byte { return sha256.Sum256([]byte("strand-shm\x00" + job)) }

func u32(mem []byte, off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&mem[off])) }
func i32(mem []byte, off int) *atomic.Int32  { return (*atomic.Int32)(unsafe.Pointer(&mem[off])) }
func u64(mem []byte, off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&mem[off])) }

// writeHeader fills a new segment's header (lo's side).
func writeHeader(mem []byte, ringCap int, job string, lo, hi, pid int, secret [32]byte) {
	copy(mem[offSecret:offSecret+32], secret[:])
	binary.LittleEndian.PutUint64(mem[offCap:], uint64(ringCap))
	h := jobHash(job)
	copy(mem[offJob:offJob+32], h[:])
	binary.LittleEndian.PutUint32(mem[offRanks:], uint32(lo))
	binary.LittleEndian.PutUint32(mem[offRanks+4:], uint32(hi))
	u32(mem, offPids).Store(uint32(pid))
	for side := 0; side < 2; side++ {
		i32(mem, offState+64*side+4).Store(-1)
	}
	u64(mem, offMagic).Store(magic) // last: the header is complete
}

// ring is one direction of a segment.
type ring struct {
	head, tail     *atomic.Uint64
	rxWait, txWait *atomic.Uint32
	data           []byte
	capacity, mask uint64
}

func newRing(mem []byte, idx, ringCap int) *ring {
	c := headerBytes + idx*ctlBytes
	d := dataOff + idx*ringCap
	return &ring{
		head: u64(mem, c+offHead), tail: u64(mem, c+offTail),
		rxWait: u32(mem, c+offRxWait), txWait: u32(mem, c+offTxWait),
		data:     mem[d : d+ringCap : d+ringCap],
		capacity: uint64(ringCap), mask: uint64(ringCap - 1),
	}
}

// Record headers: 16 bytes, 16-aligned, never split by the ring's end.
// word 0 is the tag, word 1 the payload length; a padding record (flag
// bit 63) says "skip the rest of the ring" and has no payload.
const (
	recHeader = 16
	padFlag   = 1 << 63
	// Messages up to smallMax bytes are contiguous in the ring (padded
	// to its start when they would wrap) and handed over whole; longer
	// ones start on a 4096-byte boundary of the ring, so that every
	// piece the reader hands over starts at a multiple of
	// transport.ChunkAlign of the message.
	smallMax  = 64 << 10
	pageAlign = 4096
)

func alignUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// payloadStart is where the payload of a message whose header is at pos
// begins.
func payloadStart(pos, n uint64) uint64 {
	if n > smallMax {
		return alignUp(pos+recHeader, pageAlign)
	}
	return pos + recHeader
}

// recordEnd is the position after a message of n bytes whose payload
// starts at q.
func recordEnd(q, n uint64) uint64 { return alignUp(q+n, recHeader) }
