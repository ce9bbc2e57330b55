// Package verbs is the Go-level view of the InfiniBand/RoCE verbs API that
// the RDMA transport is written against: devices and ports, protection
// domains, completion queues, reliable-connected queue pairs with their
// RESET -> INIT -> RTR -> RTS state machine, memory regions with local and
// remote keys, work requests and work completions.
//
// Two providers implement it: softverbs, a pure-Go provider that runs
// between processes on one machine (used by tests and CI), and ibverbs, a
// cgo binding to libibverbs behind the `rdma` build tag. The interface
// mirrors the C API closely (names, states, status codes) so that the
// transport's protocol is the same code over both.
//
// Addresses: an MR's Addr is an opaque 64-bit address in the registering
// process's address space (a real virtual address for ibverbs, a synthetic
// one for softverbs). Work requests name memory only through (Addr, Length,
// key) triples, never Go slices, exactly as the hardware does; a remote
// peer learns (Addr, RKey) of a buffer through a message.
package verbs
