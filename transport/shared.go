package transport

import (
	"context"
	"errors"
)

// SharedMemory is implemented by transports through which this rank can
// map memory its peers map too: transport/shm, and transport/hybrid when
// every peer asked for is routed through one transport that implements
// it. Unlike the methods of Transport this is not an operation that can
// be built from sends and receives, so it is an interface of its own,
// asked for with a type assertion; a caller without it (TCP, RDMA, a
// wrapper) keeps exchanging messages.
//
// The transport only creates, exchanges and maps the memory. What lives
// in it (the collectives' call log and slots) is the caller's business.
type SharedMemory interface {
	// ShareRegions is a collective call of the ranks in group (this rank
	// among them; every member passes the same list and tag): each
	// creates a zeroed region of n bytes, and every member maps every
	// other member's. The tag must be reserved for the exchange: no other
	// message may use it between these ranks.
	//
	// The members reach the same verdict: either every one gets the
	// regions, or every one an error (one that wraps ErrNoSharedMemory
	// when some member cannot map some other's memory, and comes at
	// once, without communicating, when this transport reaches some
	// member by other means).
	ShareRegions(ctx context.Context, tag Tag, group []int, n int) (*Regions, error)
}

// Regions are a group's shared regions, as one member sees them.
type Regions struct {
	// Mem[i] is group[i]'s region, this rank's own included, at least
	// 64-byte aligned. It stays mapped until Release (after the last
	// access: unmapping memory a goroutine still reads crashes the
	// process) and outlives the transport's Close.
	Mem [][]byte
	// Gone reports whether member i has closed its transport (an error
	// wrapping a *PeerError, and ErrPeerLeft after a goodbye) or crashed:
	// a caller waiting for a word in Mem[i] asks, since nothing else
	// tells it. A member killed outright is announced through
	// PeerFailures, as always.
	Gone    func(i int) error
	Release func()
}

// ErrNoSharedMemory is wrapped by ShareRegions' error when some members
// of the group cannot map each other's memory.
var ErrNoSharedMemory = errors.New("ranks cannot share memory")
