// Package rendezvous defines the key-value store that ranks use to find each
// other before any transport exists: each rank publishes its listening
// address (or RDMA queue-pair address) under a key and waits for its peers'.
//
// The coordinator serves a Store over gRPC; tests and single-process
// simulations use the in-memory Mem store.
package rendezvous
