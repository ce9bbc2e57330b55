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
//
// Every transport offers every operation below. What differs is how: Caps
// says which operations a transport does natively (and so what a caller
// gains by using them); the others are built from Send and Recv with the
// adapters in adapt.go (SendEach, LazyRecv, StagedChunks), with the same
// results and ordering, so a caller never needs to ask whether an
// operation exists, and a wrapper forwards every method and Caps.
type Transport interface {
	// Rank is this process's index in [0, Size()).
	Rank() int
	// Size is the number of ranks connected by this transport.
	Size() int
	// Caps describes what this transport does natively. It is fixed for
	// the transport's life.
	Caps() Caps
	// Send delivers buf to peer on tag. It returns once buf may be reused,
	// which may be before the peer has received it. It fails with an error
	// wrapping *PeerError when the peer is gone or ctx ends first.
	Send(ctx context.Context, peer int, tag Tag, buf []byte) error
	// SendMulti sends bufs to peer on tag, exactly like one Send for each
	// in order (Caps.BatchedSend: in one write, one wake-up at the peer).
	SendMulti(ctx context.Context, peer int, tag Tag, bufs [][]byte) error
	// Recv receives the next message from peer on tag into buf. The message
	// must be exactly len(buf) bytes long; a message of another size is
	// consumed and reported as a *SizeError, so the stream stays in sync.
	Recv(ctx context.Context, peer int, tag Tag, buf []byte, opts ...RecvOpt) error
	// PostRecv accepts a receive now and completes it at the returned
	// PostedRecv's Wait, which returns what Recv would have. Its buffer
	// must not be touched until Wait returns. With Caps.PostedRecv the
	// receive takes its place in the (peer, tag) order when PostRecv
	// returns and its message lands straight in buf; without, it takes its
	// place at Wait (the same for a caller that waits for its receives of
	// one (peer, tag) in the order it posted them, as the collectives do).
	PostRecv(ctx context.Context, peer int, tag Tag, buf []byte, opts ...RecvOpt) PostedRecv
	// PostRecvChunks is PostRecv of an n-byte message whose bytes go to
	// sink instead of a buffer, in chunks (see ChunkSink): a message of
	// another length fails with a *SizeError and sink is not called. When
	// Wait returns nil, sink has seen every byte; when it returns an
	// error, sink may have seen some and is not called again. With
	// Caps.ChunkedRecv the chunks come straight out of the transport's own
	// buffers as they arrive; without, the message is received into a
	// staging buffer and handed over as one chunk at Wait.
	PostRecvChunks(ctx context.Context, peer int, tag Tag, n int, sink ChunkSink, opts ...RecvOpt) PostedRecv
	// PeerFailures returns every peer failure seen so far, and a channel
	// that is closed at the next new failure (so a watcher can loop: read
	// the list, then wait on the channel). A transport without
	// Caps.Notifies returns no failures and a nil channel.
	PeerFailures() (failed []*PeerError, next <-chan struct{})
	// Close releases every connection. Blocked calls return errors.
	Close() error
}

// Caps describes what a transport does natively, beyond what the
// Transport interface promises of every transport. Callers read it to
// choose a strategy (how far to post ahead, how large a pipelining
// segment), never to decide whether a method may be called.
type Caps struct {
	// PostedRecv: a posted receive takes its place in the (peer, tag)
	// order at PostRecv and its message is written straight into its
	// buffer (no parking copy), so posting ahead pays. Without it, a
	// posted receive runs when it is waited for.
	PostedRecv bool
	// ChunkedRecv: PostRecvChunks hands the sink the message straight
	// out of the transport's own buffers (a socket's read buffer, a
	// shared-memory ring) as it arrives, so a reducing collective
	// combines each chunk while it is in cache and no staging buffer is
	// written and read back. Without it, each posted chunked receive
	// holds an n-byte staging buffer until Wait.
	ChunkedRecv bool
	// BatchedSend: SendMulti puts its messages in one write (one system
	// call, one wake-up at the peer) rather than one each.
	BatchedSend bool
	// Notifies: the transport notices peer failures on its own (a reset
	// socket, a dead process) even while no call is talking to that peer,
	// and announces them through PeerFailures, so collectives abort at
	// once and name the culprit instead of waiting for their deadline.
	Notifies bool
	// Polls: a receive marked Soon polls for its message before parking.
	Polls bool
}

// And is the capabilities both a and b have (a transport routing over
// both offers only those natively).
func (a Caps) And(b Caps) Caps {
	return Caps{
		PostedRecv:  a.PostedRecv && b.PostedRecv,
		ChunkedRecv: a.ChunkedRecv && b.ChunkedRecv,
		BatchedSend: a.BatchedSend && b.BatchedSend,
		Notifies:    a.Notifies && b.Notifies,
		Polls:       a.Polls && b.Polls,
	}
}

// RecvOpt is an option of one receive call (Recv, PostRecv,
// PostRecvChunks); several are combined with |.
type RecvOpt uint8

const (
	// Soon marks a latency-bound receive: its message is expected within
	// about a network round trip (the peer has sent it or is about to),
	// so a transport may poll for it briefly before parking the caller,
	// saving a thread wake-up. Without it a receive may wait long (a peer
	// still busy elsewhere) and polling would only burn a core.
	// Transports that cannot poll (Caps.Polls false) ignore it.
	Soon RecvOpt = 1 << iota
)

// RecvOpts combines a call's options into one set.
func RecvOpts(opts []RecvOpt) RecvOpt {
	var o RecvOpt
	for _, x := range opts {
		o |= x
	}
	return o
}

// Has reports whether every option of x is in o.
func (o RecvOpt) Has(x RecvOpt) bool { return o&x == x }

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

// PostedRecv is a receive in flight. Wait must be called exactly once; it
// returns what Recv would have returned.
type PostedRecv interface {
	Wait() error
}

// FailedRecv is a PostedRecv that has already failed with err.
func FailedRecv(err error) PostedRecv { return failedRecv{err} }

type failedRecv struct{ err error }

func (f failedRecv) Wait() error { return f.err }

// ChunkSink consumes a message received through PostRecvChunks.
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
