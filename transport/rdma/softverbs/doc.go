// Package softverbs is a pure-Go verbs provider: reliable-connected queue
// pairs, completion queues and memory regions with keys, between goroutines
// or processes on one machine, with no kernel or hardware support.
//
// Each opened device listens on a loopback TCP port; its LID is that port
// and its GID the IPv4-mapped address ::ffff:127.0.0.1, so a QPAddr carries
// everything a peer needs. When a QP moves to RTS it dials its remote QP's
// device: that connection is the "wire" for the QP's requests (SEND, RDMA
// WRITE [with immediate]) in one direction and the responder's ACK/NAKs in
// the other. Two QPs connected to each other therefore use two TCP streams,
// and a responder never blocks on its peer's requests.
//
// Semantics follow the InfiniBand RC transport as the transport relies on
// them:
//   - A request completes (with a send-side completion) only when the
//     responder has placed the data and acknowledged it.
//   - An RDMA WRITE is checked against the target region: an unknown rkey,
//     a region without remote-write access or an out-of-bounds range NAKs
//     with "remote access error" and moves both QPs to the error state.
//   - A SEND or WRITE WITH IMMEDIATE that finds no posted receive NAKs with
//     receiver-not-ready. The provider acts as if rnr_retry were 0: the
//     requester completes with "RNR retry counter exceeded" and errors, so
//     a missing receive is never hidden by retries.
//   - A QP in the error state flushes every outstanding work request with
//     "work request flushed error". A lost connection (peer process died or
//     its QP errored) errors the QP at once; hardware would only notice on
//     its next request, so callers must still bound waits with deadlines.
//
// Faults can be injected per provider (see Faults): dropped completions, a
// QP entering the error state after n requests, and a slow peer.
package softverbs
