package collective

import (
	"encoding/binary"
	"fmt"
)

// kind names a collective operation.
type kind uint8

const (
	kAllReduce kind = iota + 1
	kReduceScatter
	kAllGather
	kBroadcast
	kReduce
	kBarrier
	kAllToAll
)

func (k kind) String() string {
	switch k {
	case kAllReduce:
		return "allreduce"
	case kReduceScatter:
		return "reducescatter"
	case kAllGather:
		return "allgather"
	case kBroadcast:
		return "broadcast"
	case kReduce:
		return "reduce"
	case kBarrier:
		return "barrier"
	case kAllToAll:
		return "alltoall"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// fingerprint identifies one collective call. Before any data, every rank
// sends its fingerprint to its ring neighbours and checks theirs, so two
// ranks that disagree about the call (a different op, size, type or root,
// or a different group) fail at once, naming both calls, instead of
// exchanging misaligned data or hanging.
type fingerprint struct {
	Group uint64
	Seq   uint64
	Kind  kind
	Op    Op
	DType DType
	Root  int32
	Count uint64
	Rank  uint32 // sender's global rank
}

const fingerprintLen = 40

func (f *fingerprint) encode(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], f.Group)
	binary.LittleEndian.PutUint64(b[8:], f.Seq)
	b[16], b[17], b[18], b[19] = byte(f.Kind), byte(f.Op), byte(f.DType), 0
	binary.LittleEndian.PutUint32(b[20:], uint32(f.Root))
	binary.LittleEndian.PutUint64(b[24:], f.Count)
	binary.LittleEndian.PutUint32(b[32:], f.Rank)
	binary.LittleEndian.PutUint32(b[36:], 0)
}

func decodeFingerprint(b []byte) fingerprint {
	return fingerprint{
		Group: binary.LittleEndian.Uint64(b[0:]),
		Seq:   binary.LittleEndian.Uint64(b[8:]),
		Kind:  kind(b[16]),
		Op:    Op(b[17]),
		DType: DType(b[18]),
		Root:  int32(binary.LittleEndian.Uint32(b[20:])),
		Count: binary.LittleEndian.Uint64(b[24:]),
		Rank:  binary.LittleEndian.Uint32(b[32:]),
	}
}

// sameCall reports whether two ranks' fingerprints describe the same call.
func (f fingerprint) sameCall(g fingerprint) bool {
	f.Rank, g.Rank = 0, 0
	return f == g
}

// String describes the call as a user wrote it: "allreduce(count=100, f32, sum) seq 7".
func (f fingerprint) String() string {
	s := fmt.Sprintf("%v(count=%d, %v", f.Kind, f.Count, f.DType)
	switch f.Kind {
	case kAllReduce, kReduceScatter, kReduce:
		s += ", " + f.Op.String()
	}
	switch f.Kind {
	case kBroadcast, kReduce:
		s += fmt.Sprintf(", root=%d", f.Root)
	}
	s += fmt.Sprintf(") seq %d", f.Seq)
	if f.Kind == kBarrier {
		s = fmt.Sprintf("barrier() seq %d", f.Seq)
	}
	return s
}

// MismatchError reports two ranks calling different collectives at the
// same point of their sequence.
type MismatchError struct {
	Rank, PeerRank int    // global ranks
	Call, PeerCall string // as fingerprint.String
	SameGroup      bool
}

func (e *MismatchError) Error() string {
	msg := fmt.Sprintf("collective mismatch: rank %d called %s but rank %d called %s", e.Rank, e.Call, e.PeerRank, e.PeerCall)
	if !e.SameGroup {
		msg += " (on a different communicator: the groups' rank lists, names or node layouts differ)"
	}
	return msg
}
