// Package coordinator runs a training job's control plane: a gRPC service
// (see proto/coordinator.proto) that workers join, and a client for it.
//
// The lifecycle of a job, as the coordinator sees it:
//
//	waiting  — workers call Join; each call blocks until World() ranks have
//	           joined, or the join timeout names who is missing.
//	running  — ranks are assigned (Assign: launcher-chosen ranks, else by
//	           node then local rank so tensor-parallel peers share a node),
//	           every Join returns the rank, the DP x TP x PP mesh and the
//	           member list; workers exchange transport addresses through the
//	           key-value store (Set / Get with wait) and synchronise on
//	           barriers.
//	done     — every rank called Leave without an error.
//	failed   — a rank died (memberlist stopped hearing from it, or its Watch
//	           stream dropped without a Leave), a rank left with an error, or
//	           someone called Abort. Every worker's Watch stream receives the
//	           event naming the rank; workers cancel their collectives.
//
// Workers never decide membership themselves: memberlist gossip feeds the
// coordinator, and the coordinator decides: it fails the epoch. The
// launchers then start the next epoch (docs/ELASTIC.md): a new coordinator
// with Config.Epoch one higher, preceded for multi-node jobs by a regroup
// coordinator (Config.Regroup) through which node 0 decides which nodes
// continue. Clients bound to an epoch send it with every call and the
// coordinator refuses other epochs (epoch.go).
//
// Every RPC needs the job token (metadata "authorization: Bearer TOKEN"),
// and TLS is used when a certificate is configured: files, or a job CA
// every node derives from the token (jobca.go, strand --tls-auto).
//
// Observability: the coordinator logs through Config.Log (the launcher
// gives it the workers' zap format, lines prefixed "[coordinator]").
// Complaints about peers (a wrong token, garbage or a truncated hello on
// the gRPC port, memberlist's warnings such as undecryptable gossip) are
// logged at warn with the peer's address, at most one line per peer host
// and kind every 30 s (internal/ratelog). Status marks a running rank
// "stalled" or "missing" with its age, and a step watchdog warns once per
// stall (server.go, healthLocked and stepWatchdog), followed by one line
// per rank saying who waits on whom ("rank 2 waits on rank 3 in allreduce
// group dp seq 41 for 12.3s") from the in-flight call every heartbeat
// carries, and where the chains of waits end (waits.go); the same lines
// are logged when a rank is declared dead.
package coordinator
