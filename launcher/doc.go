// Package launcher starts the worker processes of a job on one node.
//
//	strand check --nproc 4                    Local: a coordinator on 127.0.0.1
//	                                          and 4 workers on this machine
//	strand check --nnodes 2 --node-rank 0 \   Node: node 0 also hosts the
//	   --coordinator head:29500 \             coordinator; every node starts
//	   --nproc-per-node 2                     its share of the workers
//
// A worker is a copy of the running executable with the same arguments and
// STRAND_* environment variables (see package jobenv) that tell it where the
// coordinator is, the job token and its rank. Each output line of a worker
// is prefixed with "[rank N]" (under LogFormat "json" it gets a "rank" key
// instead, and plain text becomes {"rank","level","msg"}, so the output stays
// one JSON object per line). Common.Started reports the coordinator's
// address and token once it listens (strand records them in RUN/job.json).
// When any worker fails, the others get SIGTERM
// (then SIGKILL after a grace period) and the launcher returns an *ExitError
// carrying the first failure's rank and exit code. Cancelling the context
// (Ctrl-C, SIGTERM) fails the job at the coordinator as "interrupted by the
// operator" (no rank blamed) and forwards SIGTERM to every worker. Workers
// get SIGHUP if the launcher itself dies (kill -9); WatchLauncher turns it
// into an error naming the lost launcher.
//
// Restarts (strand train --max-restarts) launch a new epoch (Common.Epoch).
// Before a multi-node restart the nodes run Regroup: node 0 waits, bounded,
// for the nodes that come back and decides the new epoch's node ranks and
// mesh (a smaller data-parallel degree when --min-nodes allows losing
// nodes). See docs/ELASTIC.md.
//
// Under Slurm, Kubernetes or torchrun there is no strand launcher: each task
// is a worker and reads its place from the environment (package jobenv).
package launcher
