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
// hosts), transport/loopback (in-process, for tests).
//
// Every transport offers the whole interface: sends of one message or of
// several at once, blocking, posted and chunked receives, and failure
// notification. Caps describes which of these a transport does natively,
// which is what a caller reads to choose a strategy (the collectives'
// receive executor posts deeper and uses larger segments over a transport
// with Caps.ChunkedRecv); the rest are built from Send and Recv with the
// adapters in adapt.go. A wrapper (a router over several transports, a
// traffic counter) forwards every method and a Caps that is true only
// where what it forwards to is native.
//
//	PostedRecv   receives posted ahead take their place at once and land in place
//	ChunkedRecv  a message handed to a ChunkSink in cache-sized chunks straight
//	             out of the transport's buffers as it arrives (the caller
//	             reduces each chunk while it is hot; the transport only calls
//	             the sink and knows nothing of reducing)
//	BatchedSend  several small messages to one peer in one write (latency)
//	Notifies     dead peers announced at once (abort instead of timing out)
//	Polls        a receive with the Soon option polls briefly instead of parking
//
// The latency hint is an option of the receive call (transport.Soon): the
// message is due within about a round trip, so the transport may poll
// instead of parking the caller (transport/tcp does, for small receives).
//
// One thing cannot be built from messages: memory both ranks map. A
// transport that has it (transport/shm, and transport/hybrid for a group
// inside one host) also implements SharedMemory (shared.go), which a
// caller asks for with a type assertion; it creates and maps per-member
// regions, and leaves what goes in them to the caller.
package transport
