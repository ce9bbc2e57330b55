// Package worker is the runtime a training program uses inside a job.
//
//	if worker.InJob() {
//		rt, err := worker.Join(ctx, worker.Options{DP: 2, TP: 2})
//		if err != nil { ... }
//		ctx := rt.Context()               // cancelled when any rank dies
//		err = train(ctx, rt.DP, rt.TP, rt.PP)
//		return rt.Leave(context.Background(), err)
//	}
//
// Join reads the worker's place from its environment (package jobenv),
// hosts the coordinator when this process is rank 0 under Slurm, Kubernetes
// or torchrun, joins the coordinator (retrying with backoff while it is not
// up), builds ONE world transport (TCP, or RDMA when asked and available)
// and one communicator per mesh group over it: World, DP, TP and PP.
//
// Failure handling: the runtime watches the coordinator. When a rank dies
// (memberlist or a dropped connection) or the job is aborted, Context() is
// cancelled with a cause naming the rank, and the transport is closed so
// that collectives blocked on any context fail at once. Explain(err) turns
// such a collective error into one that names the dead rank. A rank that
// fails waits at most verdictWait for the coordinator to name the culprit;
// one the operator stopped (OperatorStop) does not wait but aborts the job
// as "interrupted by the operator", blaming no rank.
//
// Diagnosis: every heartbeat carries the rank's oldest unfinished call and
// the peer it waits on (inflight.go), from which the coordinator's step
// watchdog says who waits on whom; memberlist's complaints go to the
// rank's log, rate-limited per peer.
package worker
