// Package e2e holds end-to-end tests that build the strand binary and run
// real multi-process jobs: local jobs with DP/TP/PP meshes, a multi-host
// job across network namespaces, failure drills (kill -9 of a worker, a
// wrong token, a coordinator that is late or never comes) and an srun job
// on a one-node Slurm cluster (see ci_slurm.sh).
//
// Tests that need root, iproute2 or Slurm skip with a message saying so.
package e2e
