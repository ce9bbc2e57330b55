// Package transport defines how ranks move bytes: the small interface that
// collective algorithms run over, independent of the wire (TCP sockets,
// RDMA verbs, or in-process channels in tests).
//
// A transport knows ranks, tags and byte buffers. It knows nothing about
// ring steps, reductions or models (the split Gloo makes between its
// transport and its algorithms).
//
// Implementations: transport/tcp (sockets, authenticated handshake,
// multi-stream), transport/rdma (verbs), transport/shm (shared memory
// between ranks of one host), transport/hybrid (each peer over one of
// several transports: shared memory on the host, TCP or RDMA between
// hosts), transport/loopback (in-process, for tests). Beyond the
// Transport interface a transport may implement optional interfaces that
// collectives discover by type assertion (adapt.go builds each from Send
// and Recv for a wrapper that must offer them whatever is underneath):
//
//	FailureNotifier  announce dead peers at once (abort instead of timing out)
//	RecvPoster       post receives ahead, wait later (pipelined segments land in place)
//	MultiSender      several small messages to one peer in one go (latency)
//	ChunkPoster      a message handed to a ChunkSink in cache-sized chunks as it
//	                 arrives (the caller reduces each chunk while it is hot; the
//	                 transport only calls the sink and knows nothing of reducing)
//
// A context marked with WithSpinHint tells a transport that a receive's
// message is due within about a round trip, so it may poll briefly
// instead of parking the caller (transport/tcp does, for small receives).
package transport
