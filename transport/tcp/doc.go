// Package tcp implements transport.Transport over TCP sockets.
//
// Connection setup (Dial):
//
//	every rank listens on the address chosen by Config.Bind (host:port, a
//	CIDR such as 10.1.0.0/16, or an interface name such as eth0), publishes
//	it in the rendezvous store under "strand/tcp/<job>/addr/<rank>", then
//	rank r dials every lower rank p < r, Config.Streams sockets per pair.
//
// Each socket starts with a handshake (handshake.go) carrying the protocol
// version, job id, both ranks and the stream index, authenticated by a
// challenge-response HMAC-SHA256 over the shared Config.Token in both
// directions: the token itself never crosses the wire. With Config.TLS
// (a job with TLS: the worker passes certificates of the job CA derived
// from the token) every socket that leaves the host runs mutual TLS 1.3
// first, and the hello inside it; sockets to a loopback address stay
// plaintext, and ranks of one host normally use shared memory anyway
// (tls.go states the rule).
//
// A dead path is noticed by the sockets themselves (link.go): keepalive
// every second and TCP_USER_TIMEOUT = Config.LinkTimeout (4 s) fail the
// peer with "link rank A <-> rank B lost" even when the control plane
// runs over another, healthy network. Refused connections (garbage, a bad
// or silent hello) are logged once per peer host and interval.
//
// After the handshake a socket carries frames (frame.go): a fixed 40-byte
// header (tag, message id, message length, part offset, part length)
// followed by the part's bytes. A message shorter than Config.SplitBytes
// travels as one frame on stream 0; a longer one is cut into one part per
// stream, written in parallel, because one loopback TCP stream tops out
// well below memory bandwidth.
//
// Ordering: stream 0 always carries a message's first part, so the order
// in which first parts arrive on stream 0 is the message order; per (peer,
// tag) a receiver hands messages to Recv calls in that order. Parts on
// other streams wait until stream 0 has announced their message.
//
// Receiving: one reader goroutine per socket reads each part straight into
// the buffer of the matching posted Recv (no copy); a message that arrives
// before its Recv is parked in a pooled buffer and copied later. A chunked
// receive (PostRecvChunks) is handed the bytes straight out of the
// reader's 256 KiB socket buffer, in 4 KiB-aligned chunks, while they are
// still in cache; a parked message is fed to it from Wait. The hot path (a
// Send or Recv of a posted buffer) allocates nothing.
//
// Waiting: a small receive marked transport.Soon polls for a
// while (Config.Spin, adaptive) before parking its goroutine. With several
// Ps it polls for the reader's completion token; with GOMAXPROCS 1 the
// reader cannot run meanwhile, so it polls the socket (ppoll) and yields
// the core (sched_yield) while the kernel has nothing, and parks only
// while the reader has bytes to handle (the reader hands the P back when
// it returns to its read), like Open MPI's yield-when-idle progress.
//
// Failures: a socket error fails the whole peer (every socket to it is
// closed and every pending call on it returns a *transport.PeerError), and
// the failure is announced through PeerFailures so that
// collectives can abort at once, naming the dead rank.
//
// Giving up is not a crash. Close says goodbye on every stream (a clean
// exit: peers' calls fail with transport.ErrPeerLeft, nobody is announced
// failed), and the goodbye names the first rank this transport saw fail,
// if any: a peer that has not noticed that rank's death yet announces it
// on the goodbye's word (before waking its waiters), so every survivor of
// a collective names the rank that died, not a neighbour that left
// because of it. For the goodbye to get through, a rank that gives up
// never cuts a frame: a send interrupted by its context finishes the frame
// it began (and every part of a split message once one part is out), and
// a receive that gives up while its buffer is being filled waits for that
// part; only a peer stalled for finishGrace (1 s) mid-frame is failed.
package tcp
