// Package transport defines how ranks move bytes: the small interface that
// collective algorithms run over, independent of the wire (TCP sockets,
// RDMA verbs, or in-process channels in tests).
//
// A transport knows ranks, tags and byte buffers. It knows nothing about
// ring steps, reductions or models (the split Gloo makes between its
// transport and its algorithms).
package transport
