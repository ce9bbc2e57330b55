package collective

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/strand-ml/strand/transport"
)

// Shared windows: when every member of a group maps every other member's
// memory (transport.SharedMemory: ranks of one host over transport/shm),
// a small all-reduce skips messages altogether. Each rank copies its
// buffer into a slot of its own window, publishes the slot's stamp, waits
// for every peer's stamp and reduces straight out of the peers' slots
// into its buffer, in exactly the order recursive doubling would (so the
// bits are those of the message path, over any transport). One copy and
// one wait per call, no system call, no wake-up: what Open MPI's vader
// fast boxes and NCCL's low-latency protocol do.
//
// Each rank's window (one per communicator, set up by its first call):
//
//	[0, 4096)              call log: 64 entries of 64 bytes, entry seq%64 =
//	                       {seq+1, fingerprint}, written by every call
//	                       (window or not) before anything else
//	[4096, +64*slots)      done words: slot s's is w+1 once this rank has
//	                       read every peer's slot s of window call w
//	[.., +128*slots)       stamps: slot s's is w+1 once this rank's data
//	                       for window call w is in slot s, followed on its
//	                       cache line by that call's fingerprint (one line
//	                       to fetch from the peer, not two); on the next
//	                       line stamp2, w+1 once this rank's share of a
//	                       large call's piece is reduced in the slot
//	[8192, ...)            slots of slotBytes each
//
// Window calls are numbered (w) in issue order, like calls, so every rank
// gives call w slot w%slots. Before writing slot s for w, a rank waits
// until every member's done word of s (its own included: async calls
// overlap) reached w-slots+1: the slot's previous occupant has been read
// everywhere.
//
// Fingerprints: the call log replaces the message exchange. A window
// call checks each peer's entry for its sequence number before using the
// peer's data, so a mismatch is found at the first differing call. When
// a ring neighbour's logged call exchanges messages (a broadcast where
// this rank all-reduces), this rank sends that neighbour its fingerprint
// the way the message path does, so the neighbour sees the mismatch at
// once too.
const (
	winLogEntries = 64
	winLine       = 64
	winSlots      = 4
	winOffDone    = winLogEntries * winLine
	winOffStamp   = winOffDone + winSlots*winLine // two lines a slot: stamp (+ fingerprint), then stamp2
	winOffData    = 8192
	// winReserved is the call-log sequence of setup: its messages use the
	// communicator's tag for it (the largest sequence number).
	winSetupSeq = tagSeqMask
)

// window is a communicator's view of its members' windows.
type window struct {
	regions   [][]byte          // per group rank, this rank's own included
	gone      func(i int) error // whether group rank i closed its transport (transport.Regions.Gone)
	release   func()
	slotBytes int
	// busy is how long a wait polls before yielding the core: none when
	// the group has more ranks than this process may use cores (they
	// share cores, and a waiting rank's poll takes the core from the
	// one it waits for).
	busy time.Duration
}

func winBytes(slotBytes int) int { return winOffData + winSlots*slotBytes }

func word(b []byte, off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&b[off])) }

func (w *window) logSeq(r int, seq uint64) *atomic.Uint64 {
	return word(w.regions[r], int(seq%winLogEntries)*winLine)
}
func (w *window) logFP(r int, seq uint64) []byte {
	off := int(seq%winLogEntries)*winLine + 8
	return w.regions[r][off : off+fingerprintLen]
}
func (w *window) done(r, s int) *atomic.Uint64  { return word(w.regions[r], winOffDone+s*winLine) }
func (w *window) stamp(r, s int) *atomic.Uint64 { return word(w.regions[r], winOffStamp+2*s*winLine) }
func (w *window) stamp2(r, s int) *atomic.Uint64 {
	return word(w.regions[r], winOffStamp+(2*s+1)*winLine)
}
func (w *window) stampFP(r, s int) []byte {
	off := winOffStamp + 2*s*winLine + 8
	return w.regions[r][off : off+fingerprintLen]
}
func (w *window) slot(r, s, n int) []byte {
	off := winOffData + s*w.slotBytes
	return w.regions[r][off : off+n]
}

// windowCapable reports whether the communicator may use shared windows
// at all: a group of several ranks on one node over a transport that
// shares memory. Whether the windows could be set up is known only after
// the first call (Comm.winReady).
func (c *Comm) windowCapable() bool {
	_, ok := c.t.(transport.SharedMemory)
	return ok && len(c.ranks) > 1 && c.topo == nil && !c.opts.NoSharedMemory
}

// SharedWindows reports whether the communicator's calls go through
// shared windows (its members map each other's memory): known once its
// first collective has run, false before.
func (c *Comm) SharedWindows() bool {
	if c == nil || !c.winCapable {
		return false
	}
	select {
	case <-c.winReady:
	default:
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.win != nil
}

// windowCall reports whether a call with fingerprint fp runs through the
// windows if they are up: an all-reduce, small (below SmallBytes, where
// recursive doubling would run: windowSmall) or large (of 3 ranks or
// more), and the reduce-scatters and all-gathers of 3 ranks or more
// (windowchunks.go). A pure function of fp and the communicator's
// options, so every rank decides alike.
func (c *Comm) windowCall(fp fingerprint) bool {
	if !c.winCapable {
		return false
	}
	switch fp.Kind {
	case kAllReduce:
		return c.windowSmall(fp) || len(c.ranks) >= minRingWindowRanks && int(fp.Count)*fp.DType.Size() >= c.opts.SmallBytes
	case kReduceScatter, kAllGather:
		return len(c.ranks) >= minRingWindowRanks
	}
	return false
}

// minRingWindowRanks: at 2 ranks the ring moves fewer bytes than the
// windows' large path (4.5 against 5.5 a byte per rank) and measured
// faster (16 MiB: 8.8 against 5.5 GB/s), so large calls of 2 ranks
// exchange messages.
const minRingWindowRanks = 3

// windowSmall reports whether an all-reduce runs through the windows as
// one piece in recursive doubling's order (else as pieces in the ring's).
func (c *Comm) windowSmall(fp fingerprint) bool {
	b := int(fp.Count) * fp.DType.Size()
	return b < c.opts.SmallBytes && b <= c.slotBytes()
}

// windowPieces is the number of window calls (pieces of at most
// pieceBytes) a large all-reduce takes.
func (c *Comm) windowPieces(fp fingerprint) int {
	if fp.Kind == kReduceScatter || fp.Kind == kAllGather {
		return c.chunkPieces(fp)
	}
	if c.windowSmall(fp) {
		return 1
	}
	per := c.pieceElems(fp.DType)
	return max(1, (int(fp.Count)+per-1)/per)
}

// Slot sizes: a small call takes one slot of up to maxSmallSlot bytes
// (SmallBytes may be set very large to force recursive doubling, which
// the larger calls then keep); a large one cuts the buffer into pieces of
// SegmentBytes, at most maxPiece. Small pieces keep every rank's slots in
// cache (4 ranks on 2 cores, 16 MiB: 7-9 GB/s busbw with 128-512 KiB
// pieces, 4-5 with 1-4 MiB).
const (
	maxSmallSlot = 256 << 10
	maxPiece     = 128 << 10
)

func (c *Comm) pieceBytes() int {
	return (min(c.opts.SegmentBytes, maxPiece) + winLine - 1) / winLine * winLine
}

func (c *Comm) pieceElems(dt DType) int { return c.pieceBytes() / dt.Size() }

// slotBytes is the size of one window slot.
func (c *Comm) slotBytes() int {
	small := (min(c.opts.SmallBytes, maxSmallSlot) + winLine - 1) / winLine * winLine
	runs := (len(c.ranks)*4 + winLine - 1) / winLine * winLine // a chunk piece's runs of one element (windowchunks.go)
	return max(small, c.pieceBytes(), runs)
}

// setupWindow maps the members' windows (the first call of every rank
// does it, before its own work). Failing to share memory is not an error:
// the communicator then exchanges messages, every member alike.
func (cl *call) setupWindow() error {
	c := cl.c
	defer close(c.winReady)
	slot := c.slotBytes()
	tag := transport.Tag(c.tags | winSetupSeq)
	rs, err := c.t.(transport.SharedMemory).ShareRegions(cl.ctx, tag, c.ranks, winBytes(slot))
	if errors.Is(err, transport.ErrNoSharedMemory) {
		return nil
	}
	if err != nil {
		var pe *transport.PeerError
		if errors.As(err, &pe) {
			cl.blocked[1].Store(int64(pe.Peer)) // a timeout names whom setup waited for
		}
		return fmt.Errorf("sharing windows: %w", err)
	}
	w := &window{regions: rs.Mem, gone: rs.Gone, release: rs.Release, slotBytes: slot, busy: spinBusy}
	if len(c.ranks) > runtime.NumCPU() {
		w.busy = 0
	}
	c.mu.Lock()
	c.win = w
	c.mu.Unlock()
	return nil
}

// logCall writes the call's fingerprint into this rank's call log.
func (cl *call) logCall(w *window) {
	c := cl.c
	cl.fp.encode(cl.fpOut[:])
	copy(w.logFP(c.me, cl.fp.Seq), cl.fpOut[:])
	w.logSeq(c.me, cl.fp.Seq).Store(cl.fp.Seq + 1)
}

// runWindow is an all-reduce through the windows (see the top of this
// file): one piece, or the pieces of a large call in turn.
func (cl *call) runWindow(w *window) {
	c := cl.c
	buf := cl.bufs[0]
	switch cl.fp.Kind {
	case kReduceScatter, kAllGather:
		cl.chunkWindow(w)
		return
	}
	if c.windowSmall(cl.fp) {
		if cl.stagePiece(w, cl.wseq, buf) {
			cl.reduceWindow(w, int(cl.wseq%winSlots), buf)
			w.done(c.me, int(cl.wseq%winSlots)).Store(cl.wseq + 1)
		}
		return
	}
	per := c.pieceElems(cl.fp.DType) * cl.es
	for k := 0; k*per < len(buf) || k == 0; k++ {
		lo := k * per
		piece := buf[lo:min(lo+per, len(buf))]
		if !cl.stagePiece(w, cl.wseq+uint64(k), piece) || !cl.ringPiece(w, cl.wseq+uint64(k), lo/cl.es, piece) {
			return
		}
	}
}

// stagePiece copies piece into this rank's slot for window call ws once
// the slot is free everywhere, stamps it, and waits until every peer's
// piece of ws is in its slot with this call's fingerprint beside it. It
// reports false if the call failed.
func (cl *call) stagePiece(w *window, ws uint64, piece []byte) bool {
	if !cl.claimSlot(w, ws) {
		return false
	}
	copy(w.slot(cl.c.me, int(ws%winSlots), len(piece)), piece)
	return cl.publish(w, ws)
}

// window returns the communicator's windows (nil if its members cannot
// share memory), setting them up in the first call and waiting for that
// in the others.
func (cl *call) window() (*window, error) {
	c := cl.c
	if cl.fp.Seq == 0 {
		if err := cl.setupWindow(); err != nil {
			return nil, err
		}
	} else {
		select {
		case <-c.winReady:
		case <-cl.cx.done:
			return nil, cl.ctx.Err()
		}
	}
	return c.win, nil
}
