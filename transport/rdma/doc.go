// Package rdma implements transport.Transport over RDMA verbs: reliable
// connected queue pairs, one per peer, created through a verbs.Provider
// (libibverbs on real InfiniBand/RoCE hardware, softverbs everywhere else).
//
// Connection setup (Dial): open the device and port, allocate a protection
// domain and one completion queue, create a QP per peer, post its receive
// slots, publish its address (LID, GID, QPN, PSN, MTU) in the rendezvous
// store under "rdma/qp/<from>-<to>", read the peer's, drive the QP
// INIT -> RTR -> RTS, and meet every peer at a "rdma/ready/<rank>" barrier.
// One poller goroutine drains the completion queue.
//
// Data path, per peer (all messages of one QP are delivered in order):
//
//   - Eager (len <= EagerLimit): the payload is copied behind a 48-byte
//     header into a registered send slot and SENT into one of the
//     receiver's pre-posted receive slots. The receiver copies it into the
//     matching Recv's buffer, or queues a copy when no Recv waits yet.
//   - Rendezvous (larger): the sender registers its buffer (through the
//     registration cache) and sends a small RTS (tag, length, token). The
//     receiver's Recv registers its buffer and answers with a CTS carrying
//     (address, rkey, token). The sender RDMA WRITEs WITH IMMEDIATE the
//     whole message straight into the receiver's buffer; the immediate
//     names the Recv, whose completion arrives on a receive slot.
//
// Parking: a large message whose RTS arrives before its Recv is accepted
// into a pooled registered buffer (at most ParkBytes per peer) and copied
// when the Recv comes, so that, as with TCP, a Send never waits for the
// receiving application; beyond the budget the RTS waits for the Recv.
//
// Cancellation: a call whose context ends before anything reached the
// wire leaves no trace. A rendezvous already announced is kept consistent:
// a cancelled Send still delivers its message from a private copy, and a
// cancelled Recv re-points the peer at a private buffer while its CTS is
// unsent. Once the caller's buffer is in the hands of an RDMA write, the
// call waits up to AbandonGrace for it and otherwise fails the connection,
// so that no device touches the buffer after the call returns.
//
// Flow control: every SEND and WRITE WITH IMMEDIATE consumes one receive
// work request at the peer, so a sender never posts more than the peer has
// posted. Each eager header carries the sender's cumulative count of posted
// receives ("posted"); the peer's send limit is the largest count it has
// seen. Receives are re-posted by the poller as soon as their slot has
// been copied out, whatever the application does. Two rules keep this
// deadlock-free: protocol messages may use all but the last credit, and a
// credit-only message (sent when RecvSlots/2 re-posted receives have not
// been advertised) may use the last one. A credit-only message never
// triggers another by itself, so the two sides cannot ping-pong.
//
// Why that cannot deadlock, in short: once everything sent has arrived, a
// side blocked for credit has at most one credit left, so its peer holds at
// least RecvSlots-1 unadvertised receives and sends a credit-only message,
// unless the peer has spent its own last credit too. Spending the last
// credit takes a credit-only message, and for both sides' last messages
// to be credit-only messages, each would have to be sent before the other
// arrived while the later one still had something unadvertised; but the
// limit that let the later one go out was learned from a message of the
// other side that, with nothing received in between, left nothing to
// advertise. The soft provider fails loudly on a missing receive, so every
// test run checks this.
//
// Link detection (link.go): a queue pair idle for LinkTimeout/4 sends a
// heartbeat, and a request unacknowledged for LinkTimeout (4 s, as TCP's
// keepalive and TCP_USER_TIMEOUT), or a wait for credit with nothing
// received for as long, fails the peer with "link rank A <-> rank B
// lost", so a cut or a dead peer host is named within the job's
// failure-detection time even when no transfer is under way. The soft
// provider simulates a cut cable with Provider.Cut.
//
// Errors: a failed work completion, a lost connection, or a rendezvous
// abandoned past AbandonGrace moves the peer's QP to the error state and
// fails every pending and later operation with that peer; the error is a
// *transport.PeerError naming the peer and the operation, wrapping a
// *verbs.WCError with the verbs status. Other peers are unaffected, and the
// failure is announced through PeerFailures.
package rdma
