// Package ibverbs binds libibverbs (rdma-core) as a verbs.Provider for real
// InfiniBand and RoCE devices.
//
// The binding uses cgo and is compiled only with the `rdma` build tag
// (`go build -tags rdma`, which needs libibverbs-dev and a C compiler);
// the default build of strand contains none of it and stays cgo-free, so
// the same source produces a binary that runs on machines without
// libibverbs. Without the tag this package is empty.
//
// ibv_post_send, ibv_post_recv and ibv_poll_cq are static inline functions
// in verbs.h (they jump through the provider's ops table) and
// ibv_reg_mr / ibv_query_port are macros, so Go cannot call them directly:
// small C wrappers in the cgo preamble do, and also flatten the unions of
// ibv_send_wr and ibv_wc into plain structs.
//
// Registered Go memory is pinned with runtime.Pinner for the lifetime of
// the registration, which is what the cgo rules require when C (here the
// NIC) keeps a Go pointer after the call returns.
//
// A machine without devices (ibv_get_device_list returning NULL with
// ENOSYS because the kernel lacks RDMA support, or an empty list) is
// reported as an error wrapping verbs.ErrNoDevice, never a crash.
package ibverbs
