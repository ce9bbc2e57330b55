// Changes since the skeleton (additive only, so every implementation keeps
// compiling):
//   - FailureNotifier: an optional interface a transport implements when it
//     learns of a peer's death even while no call is talking to that peer
//     (a reset socket). Collectives use it to abort at once and name the
//     culprit instead of waiting for their deadline.
//   - Zero-length messages are legal (barriers use them).
//   - RecvPoster: an optional interface for posting several receives ahead
//     and waiting for them later, so that a pipelined collective's next
//     segments land straight in their buffers.
//   - MultiSender: an optional interface for sending several small
//     messages to one peer at once (one system call on TCP), which saves a
//     wake-up per message on latency-bound collectives.
//   - ChunkPoster: an optional interface for receiving a message as a
//     sequence of cache-sized chunks handed to a ChunkSink instead of into
//     one buffer, so that a reducing collective can combine each chunk
//     while it is still in cache (no staging buffer written and re-read).
//   - WithSpinHint / SpinHint: a context mark for latency-bound receives,
//     which a transport may poll for briefly instead of parking.
//   - IsSpinHintKey: lets a custom Context carry the spin mark itself
//     (collective's reused per-call context, which allocates nothing).

package transport

import (
	"context"
	"errors"
	"fmt"
)

// Tag separates independent message streams between the same two ranks
// (for example two communicators, or two concurrent collectives). Messages
// from one sender to one receiver on one tag arrive in the order sent.
type Tag uint64

// Transport connects one rank to every other rank of a fixed set of Size()
// ranks. All methods are safe for concurrent use; Send and Recv on different
// (peer, tag) pairs may proceed in parallel.
type Transport interface {
	// Rank is this process's index in [0, Size()).
	Rank() int
	// Size is the number of ranks connected by this transport.
	Size() int
	// Send delivers buf to peer on tag. It returns once buf may be reused,
	// which may be before the peer has received it. It fails with an error
	// wrapping *PeerError when the peer is gone or ctx ends first.
	Send(ctx context.Context, peer int, tag Tag, buf []byte) error
	// Recv receives the next message from peer on tag into buf. The message
	// must be exactly len(buf) bytes long; a message of another size is
	// consumed and reported as a *SizeError, so the stream stays in sync.
	Recv(ctx context.Context, peer int, tag Tag, buf []byte) error
	// Close releases every connection. Blocked calls return errors.
	Close() error
}

// PeerError reports a failure talking to one peer, naming it so that a dead
// or misbehaving rank can be identified from any other rank's log.
type PeerError struct {
	Peer int    // global rank of the peer within the transport
	Op   string // "send", "recv", "connect", ...
	Err  error
}

func (e *PeerError) Error() string { return fmt.Sprintf("%s rank %d: %v", e.Op, e.Peer, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }

// SizeError reports a received message whose length differs from the
// buffer the receiver posted: the two ranks disagree about what they are
// exchanging (for example, tensors of different sizes).
type SizeError struct {
	Peer      int
	Tag       Tag
	Want, Got int
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("message from rank %d on tag %#x has %d bytes, receiver expected %d", e.Peer, uint64(e.Tag), e.Got, e.Want)
}

// ErrPeerLeft is wrapped by the error of a Send or Recv whose peer closed
// its transport cleanly (said goodbye) and will send nothing more. During
// a collective this usually means the peer gave up because of another
// rank's failure, which the caller may not have heard of yet.
var ErrPeerLeft = errors.New("peer closed its transport (said goodbye) and will send nothing more")

// FailureNotifier is optionally implemented by a Transport that notices
// peer failures on its own (for example a TCP connection reset by a killed
// process). Collectives check for it with a type assertion.
type FailureNotifier interface {
	// PeerFailures returns every peer failure seen so far, and a channel
	// that is closed at the next new failure (so a watcher can loop:
	// read the list, then wait on the channel).
	PeerFailures() (failed []*PeerError, next <-chan struct{})
}

// RecvPoster is optionally implemented by a Transport that can accept a
// receive now and complete it later. A posted receive takes its place in
// the (peer, tag) order when PostRecv returns, exactly as if Recv had been
// called then; its buffer must not be touched until Wait returns.
type RecvPoster interface {
	PostRecv(ctx context.Context, peer int, tag Tag, buf []byte) PostedRecv
}

// PostedRecv is a receive in flight. Wait must be called exactly once; it
// returns what Recv would have returned.
type PostedRecv interface {
	Wait() error
}

// FailedRecv is a PostedRecv that has already failed with err.
func FailedRecv(err error) PostedRecv { return failedRecv{err} }

type failedRecv struct{ err error }

func (f failedRecv) Wait() error { return f.err }

// MultiSender is optionally implemented by a Transport that can send
// several messages to one peer on one tag at once. It behaves exactly like
// calling Send for each buffer in order.
type MultiSender interface {
	SendMulti(ctx context.Context, peer int, tag Tag, bufs [][]byte) error
}

// ChunkSink consumes a message received through ChunkPoster.
type ChunkSink interface {
	// Chunk is handed the message bytes [off, off+len(b)). b is valid only
	// during the call. Chunks of one message never overlap and together
	// cover it exactly once; each starts at a multiple of ChunkAlign.
	// Chunk may be called from a transport goroutine, and concurrently for
	// different ranges of the same message (a message split over several
	// sockets), so it must only touch the range it was given.
	Chunk(off int, b []byte)
}

// ChunkAlign is the alignment of every chunk offset handed to a ChunkSink
// (a multiple of every element size).
const ChunkAlign = 4096

// ChunkPoster is optionally implemented by a Transport that can hand an
// incoming message to a ChunkSink piece by piece as it arrives. It
// behaves like RecvPoster.PostRecv with a buffer of n bytes, except that
// the bytes go to sink: a message of another length fails with a
// *SizeError and sink is not called. When Wait returns nil, sink has seen
// every byte; when it returns an error, sink may have seen some and is
// not called again.
type ChunkPoster interface {
	PostRecvChunks(ctx context.Context, peer int, tag Tag, n int, sink ChunkSink) PostedRecv
}

type spinHintKey struct{}

// WithSpinHint marks receives made with the returned context as latency
// bound: their message is expected within about a network round trip (the
// peer has sent it or is about to), so a transport may poll for it briefly
// before parking the caller, saving a thread wake-up. Without the mark a
// receive may wait long (a peer still busy elsewhere) and polling would
// only burn a core. Transports that cannot poll ignore it.
func WithSpinHint(ctx context.Context) context.Context {
	return context.WithValue(ctx, spinHintKey{}, true)
}

// IsSpinHintKey reports whether key is the context key WithSpinHint sets.
// A Context implementation that carries the mark itself (so that it needs
// no WithValue per call) answers Value(key) with true for this key.
func IsSpinHintKey(key any) bool {
	_, ok := key.(spinHintKey)
	return ok
}

// SpinHint reports whether ctx carries WithSpinHint's mark.
func SpinHint(ctx context.Context) bool {
	v, _ := ctx.Value(spinHintKey{}).(bool)
	return v
}
