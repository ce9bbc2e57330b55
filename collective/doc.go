// Package collective implements collectives (AllReduce, ReduceScatter,
// AllGather, Broadcast, Reduce, Barrier, AllToAll, Send/Recv) over any
// transport.Transport, for groups of ranks such as a mesh's DP or TP group.
//
// Layers, each in its own file:
//
//	plan.go         algorithms as pure functions: (group size, rank, count) -> Plan,
//	                an ordered list of sends and receives with dependencies
//	hier.go         the topology-aware all-reduce (Options.Nodes): ring
//	                reduce-scatter inside each node, ring all-reduce of each
//	                chunk across nodes, ring all-gather inside, as one plan
//	exec.go         the executor: runs one rank's plan over a transport with a
//	                send lane and a receive lane in parallel; small plans run
//	                inline on the caller (receives marked transport.Soon); the
//	                receive lane posts receives ahead, and each reducing
//	                receive is a chunked one combined into place as it
//	                arrives (over shared memory straight out of the peer's
//	                ring); how far ahead it posts and the default segment
//	                size follow the transport's Caps, not its type
//	window.go       shared windows: where every member maps every other's
//	                memory (transport.SharedMemory, one host), a small
//	                all-reduce copies its buffer into a slot of its own
//	                window and reduces straight out of the peers' slots, in
//	                recursive doubling's order (the same bits), with no
//	                message at all; a call log in the window carries every
//	                call's fingerprint
//	windowsync.go   how window calls meet: slot claims, stamps, the call
//	                log (mismatches), a peer's departure, paced waits
//	windowtree.go   the small all-reduce's reduction, recursive doubling's
//	                order
//	windowring.go   large all-reduces of 3+ ranks through the windows, piece
//	                by piece, in the ring's order
//	windowchunks.go reduce-scatters and all-gathers of 3+ ranks through the
//	                windows
//	comm.go         Comm: the public API, algorithm choice by size, async handles
//	callctx.go      the per-call context (deadline, cancellation),
//	                reused with the call's record so a call allocates nothing
//	fingerprint.go  the per-call identity exchanged before any data
//	op.go, dtype.go reductions and element types (f32; bf16/f16 as 16-bit
//	                patterns, reduced in float32)
//
// Usage (one world transport, one Comm per group):
//
//	tr, _ := tcp.Dial(ctx, tcp.Config{Rank: r, Size: w, Store: s, JobID: job, Token: tok, Bind: "eth0"})
//	dp, _ := collective.New(tr, mesh.Group(mesh.DataAxis, r), collective.Options{Name: "dp"})
//	h := dp.AllReduceAsync(ctx, collective.F32(bucket), collective.Avg)
//	... more backward ...
//	if err := h.Wait(ctx); err != nil { ... }
//
// Determinism: every chunk is reduced in a fixed order that depends only on
// the group size (and node layout) and the algorithm, which depends only
// on the call; the same inputs give the same bits on every rank and every
// run.
//
// Safety: each call's fingerprint (group, sequence number, op, type,
// count, root) goes to both ring neighbours before any data to them (small
// inline calls put it in the same write as the first data), and each rank
// checks a neighbour's before reading its data, so a rank that calls
// something else fails at once with a *MismatchError naming both ranks and
// both calls. Over shared windows every call also logs its fingerprint
// in its window, and a window call checks each peer's log and stamp
// before using the peer's data (and sends its fingerprint to a neighbour
// whose mismatching call waits for messages). Every call has a deadline (Options.Timeout when the
// context has none); when a member dies (the transport reports it) or the
// deadline passes, the call returns an error naming the op, the sequence
// number and the dead or missing ranks.
//
// Allocation: a blocking small all-reduce allocates nothing once warm
// (over transport/tcp and transport/loopback; TestSmallAllReduceAllocatesNothing):
// call records are recycled, each with its own reusable context and
// deadline timer, plans are cached per size, and the caller's context, if
// it can be cancelled, is watched once per communicator rather than per
// call (a new cancellable context per call costs a registration, and an
// async call its goroutine and Handle).
//
// Tags: a communicator uses the tags whose top 24 bits are a hash of its
// name and ranks; collective call seq uses tag (group | seq), so concurrent
// async calls and communicators sharing a transport do not mix messages.
package collective
