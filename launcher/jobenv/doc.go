// Package jobenv reads a worker's place in a job from its environment.
//
// Four launchers are understood, in this order of precedence:
//
//	strand     STRAND_COORDINATOR, STRAND_RANK, STRAND_LOCAL_RANK, ... (set by
//	           `strand train/check --nproc` and the multi-node launcher)
//	slurm      SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID,
//	           SLURM_NODELIST (inside an srun step; rank 0 hosts the
//	           coordinator on the first node of the node list)
//	kubernetes JOB_COMPLETION_INDEX of an Indexed Job, with STRAND_WORLD_SIZE
//	           and STRAND_COORDINATOR naming pod 0 through the headless Service
//	torchrun   RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//
// Detect is a pure function of a getenv function, so every launcher's
// variables are table-tested without touching the process environment.
package jobenv
