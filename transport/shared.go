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
	// other member's. regions[i] is group[i]'s region, this rank's own
	// included, each at least 64-byte aligned. The tag must be reserved
	// for the exchange: no other message may use it between these ranks.
	//
	// The members reach the same verdict: either every one returns the
	// regions, or every one returns an error (one that wraps
	// ErrNoSharedMemory when some member cannot map some other's memory,
	// and returns at once, without communicating, when this transport
	// reaches some member by other means). The regions stay mapped
	// until release is called (after the last access: unmapping memory
	// a goroutine still reads crashes the process) and outlive the
	// transport's Close.
	ShareRegions(ctx context.Context, tag Tag, group []int, n int) (regions [][]byte, release func(), err error)
}

// ErrNoSharedMemory is wrapped by ShareRegions' error when some members
// of the group cannot map each other's memory.
var ErrNoSharedMemory = errors.New("ranks cannot share memory")
