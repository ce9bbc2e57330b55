// Package transport defines how ranks move bytes: the small interface that
// collective algorithms run over, independent of the wire (TCP sockets,
// RDMA verbs, or in-process channels in tests).
//
// A transport knows ranks, tags and byte buffers. It knows nothing about
// ring steps, reductions or models (the split Gloo makes between its
// transport and its algorithms).
//
// Implementations: transport/tcp (sockets, authenticated handshake,
// multi-stream), transport/rdma (verbs), transport/loopback (in-process,
// for tests). Beyond the Transport interface a transport may implement
// optional interfaces that collectives discover by type assertion:
//
//	FailureNotifier  announce dead peers at once (abort instead of timing out)
//	RecvPoster       post receives ahead, wait later (pipelined segments land in place)
//	MultiSender      several small messages to one peer in one go (latency)
package transport
