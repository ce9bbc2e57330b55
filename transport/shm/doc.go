// Package shm implements transport.Transport between ranks on one host
// through shared memory, without cgo.
//
// Segments. Each pair of ranks lo < hi shares one segment (segment.go): a
// header and two single-writer rings (lo -> hi, hi -> lo), RingBytes each
// (default 4 MiB). The lower rank creates it with memfd_create, mode
// 0600: it has no name in /dev/shm or any other file system, so no exit,
// failure or kill -9 can leave anything behind. The creator writes a
// random secret into the header, listens on an abstract Unix socket (no
// file either) and publishes "pid fd socket" in the rendezvous store; the
// peer opens /proc/<pid>/fd/<fd> (the kernel allows it only to a process
// that may inspect the creator: same user, same pid namespace), checks
// the header's magic, job hash, ranks and pid, maps it and connects to
// the socket (same network namespace) presenting the secret. Then the
// creator closes its descriptor: the memory lives exactly as long as the
// two mappings.
//
// Messages. A record is a 16-byte header (tag, length) and the payload.
// Messages up to 64 KiB are contiguous in the ring (a padding record
// skips to the ring's start when one would wrap) and are handed over
// whole; longer ones start on a 4 KiB boundary and stream through the
// ring, published every 256 KiB, so the receiver consumes the front of a
// message while the sender writes the rest, and a message longer than the
// ring needs no intermediate buffer on either side. The writer owns the
// head, the reader the tail (64-bit positions, never wrapped).
//
// Receiving. There is no reader goroutine: a receive posted for (peer,
// tag) waits in a queue, and whichever waiting receive holds the peer's
// pump lock moves every complete piece out of the ring into the receive
// it belongs to (a message with no receive yet is parked in a buffer and
// copied later, keeping per-(peer, tag) order). A chunked receive
// (transport.Caps.ChunkedRecv) is handed the bytes straight out of the ring,
// the peer's memory, in 4 KiB-aligned pieces: a reducing collective
// combines them with no staging copy. A writer that finds the ring full
// and no reader making room for 5 ms asks the receiving rank's bell
// goroutine to park what is in the ring, so a send never depends on the receiver
// having posted (as with TCP's always-reading sockets).
//
// Waiting. A receive polls the ring's head (every receive, marked
// transport.Soon or not: measured, a parked wait costs more than the
// poll), yielding the core every 64 polls; then it parks on a Go channel.
// How long it polls adapts per peer, up to Config.Spin: a poll that finds
// its message restores the full budget, one that times out cuts it by an
// eighth, down to 1 us, because fruitless polls under CPU contention take
// the core from the peer and, in a process whose goroutines keep polling,
// starve the Go runtime's network poller that delivers the doorbells
// (post.waitData). The pair's
// socket is the doorbell: a writer that publishes bytes while the reader
// counts parked waiters (a word in the ring's control block) writes one
// byte, and the receiving rank's bell goroutine, parked in the runtime's
// network poller, wakes them; a reader that frees room for a parked
// writer does the same. (A futex would be the natural doorbell, but a
// goroutine blocked in futex(2) holds its P until the runtime's monitor
// takes it back, up to milliseconds later: with one P per rank the
// rank's other goroutines, its send lane among them, stall meanwhile.)
// Contexts are honoured at once (the wait is a select).
//
// Regions (transport.SharedMemory, regions.go). A group of ranks can also
// ask for one region per member that every member maps, for collectives
// that read their peers' data in place (collective's shared windows).
// Each member creates its region as a memfd like the segments, sends its
// pid and descriptor over the pairs' rings, maps the others' through
// /proc, and all report success before anyone closes its descriptor, so
// the members agree on the outcome and nothing outlives the mappings.
//
// Failures. The doorbell socket also carries liveness: when the peer's
// process exits without a goodbye (kill -9), the kernel closes its end
// and every pending call on the peer returns a *transport.PeerError
// naming it, announced through Transport.PeerFailures. Close writes a
// goodbye first (the side's state word, naming the first rank this
// transport saw fail, as the TCP transport's goodbye does): the peer's
// receives get what was sent before it and then fail with
// transport.ErrPeerLeft. Abort marks the side crashed, which peers treat
// as a failure. A send that has published part of a message finishes it
// however long its receiver takes while its context lives, and for up to
// 1 s after the context ends, so the stream never holds half a message.
package shm
