package jobenv

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// InterruptedReason is a job's failure reason when the operator stopped
// it: launcher and workers report the same words.
const InterruptedReason = "interrupted by the operator"

// InterruptedExitCode is how a worker the operator stopped exits (the
// shell's code for Ctrl-C, 128 + SIGINT), whether it was signalled itself
// or learnt of the stop from its peers or the coordinator; a launcher
// reading it knows the stop came from elsewhere.
const InterruptedExitCode = 130

// Variables strand's own launchers set for each worker.
const (
	Coordinator     = "STRAND_COORDINATOR"      // host:port of the coordinator
	Token           = "STRAND_TOKEN"            // job secret
	JobID           = "STRAND_JOB_ID"           // job name in logs and handshakes
	Rank            = "STRAND_RANK"             // global rank chosen by the launcher
	LocalRank       = "STRAND_LOCAL_RANK"       // index on the node
	NodeRank        = "STRAND_NODE_RANK"        // index of the node
	WorldSize       = "STRAND_WORLD_SIZE"       // number of ranks
	Mesh            = "STRAND_MESH"             // "dp,tp,pp"
	HostCoordinator = "STRAND_HOST_COORDINATOR" // "1": this process serves the coordinator
	CoordinatorPort = "STRAND_COORDINATOR_PORT" // port used with Slurm / torchrun hosts
	Transport       = "STRAND_TRANSPORT"        // "auto", "shm", "tcp" or "rdma"
	Bind            = "STRAND_BIND"             // transport bind spec
	LogFormat       = "STRAND_LOG_FORMAT"       // "console" or "json"
	TLSCert         = "STRAND_TLS_CERT"         // coordinator certificate (PEM), enables TLS
	TLSKey          = "STRAND_TLS_KEY"          // its private key (PEM)
	TLSCA           = "STRAND_TLS_CA"           // CA that workers trust for the coordinator
	RDMAProvider    = "STRAND_RDMA_PROVIDER"    // verbs provider for --transport rdma: ibverbs (default) or soft
	Epoch           = "STRAND_EPOCH"            // job incarnation: 0, +1 per elastic restart
	LauncherPID     = "STRAND_LAUNCHER_PID"     // the launcher's pid (launcher.WatchLauncher)
)

// DefaultPort is the coordinator port when none is configured.
const DefaultPort = 29500

// Job is what a worker learns about its job from the environment.
type Job struct {
	Source      string // "strand", "slurm", "kubernetes" or "torchrun"
	Coordinator string // host:port
	Token       string
	JobID       string
	Rank        int // global rank, or -1 when the coordinator chooses
	LocalRank   int
	NodeRank    int // -1 when unknown
	World       int
	// DP, TP and PP are the mesh degrees the launcher chose; 0 means "not
	// said" (then the worker's own flags decide).
	DP, TP, PP int
	// HostCoordinator is true for the one process that must serve the
	// coordinator itself (rank 0 under Slurm, Kubernetes and torchrun).
	HostCoordinator            bool
	Transport, Bind, LogFormat string
	// TLSCert and TLSKey are for the process that hosts the coordinator;
	// TLSCA makes workers use TLS to reach it.
	TLSCert, TLSKey, TLSCA string
	// RDMAProvider picks the verbs implementation: "ibverbs" (hardware,
	// the default) or "soft" (pure Go, one machine; for tests).
	RDMAProvider string
	// Epoch is the job incarnation (0 unless an elastic restart set it).
	Epoch int64
}

// Detect reads the job from getenv (os.Getenv in production). ok is false
// when no launcher's variables are present; err reports variables that are
// present but malformed or contradictory.
func Detect(getenv func(string) string) (job Job, ok bool, err error) {
	switch {
	case getenv(Coordinator) != "" && getenv(LocalRank) != "":
		// strand's launchers always set both; users set only the first
		// (to point Slurm or Kubernetes workers at a coordinator).
		job, err = fromStrand(getenv)
	case getenv("SLURM_PROCID") != "" && getenv("SLURM_STEP_ID") != "" && getenv("SLURM_STEP_ID") != "batch":
		// SLURM_STEP_ID is set inside srun steps, not in the batch script
		// itself, so `strand train --nproc 4` in an sbatch script still
		// launches locally.
		job, err = fromSlurm(getenv)
	case getenv("JOB_COMPLETION_INDEX") != "":
		job, err = fromKubernetes(getenv)
	case getenv("RANK") != "" && getenv("WORLD_SIZE") != "" && getenv("MASTER_ADDR") != "":
		job, err = fromTorchrun(getenv)
	default:
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, true, fmt.Errorf("%s environment: %w", job.Source, err)
	}
	job.Token = getenv(Token)
	if v := getenv(JobID); v != "" {
		job.JobID = v
	}
	job.Transport, job.Bind, job.LogFormat = getenv(Transport), getenv(Bind), getenv(LogFormat)
	job.TLSCert, job.TLSKey, job.TLSCA = getenv(TLSCert), getenv(TLSKey), getenv(TLSCA)
	job.RDMAProvider = getenv(RDMAProvider)
	if v := getenv(Epoch); v != "" {
		if job.Epoch, err = strconv.ParseInt(v, 10, 64); err != nil || job.Epoch < 0 {
			return Job{}, true, fmt.Errorf("%s=%q: want a non-negative integer", Epoch, v)
		}
	}
	if v := getenv(Mesh); v != "" {
		if job.DP, job.TP, job.PP, err = ParseMesh(v); err != nil {
			return Job{}, true, err
		}
	}
	if job.Rank >= job.World {
		return Job{}, true, fmt.Errorf("%s environment: rank %d outside world of %d", job.Source, job.Rank, job.World)
	}
	return job, true, nil
}

func fromStrand(getenv func(string) string) (Job, error) {
	j := Job{Source: "strand", Coordinator: getenv(Coordinator), JobID: "strand", NodeRank: -1, Rank: -1}
	var err error
	if j.World, err = atoi(getenv, WorldSize, true); err != nil {
		return j, err
	}
	if v := getenv(Rank); v != "" {
		if j.Rank, err = atoi(getenv, Rank, true); err != nil {
			return j, err
		}
	}
	if j.LocalRank, err = atoi(getenv, LocalRank, false); err != nil {
		return j, err
	}
	if getenv(NodeRank) != "" {
		if j.NodeRank, err = atoi(getenv, NodeRank, false); err != nil {
			return j, err
		}
	}
	j.HostCoordinator = getenv(HostCoordinator) == "1"
	return j, nil
}

func fromSlurm(getenv func(string) string) (Job, error) {
	j := Job{Source: "slurm", NodeRank: -1}
	var err error
	if j.Rank, err = atoi(getenv, "SLURM_PROCID", true); err != nil {
		return j, err
	}
	if j.World, err = atoi(getenv, "SLURM_NTASKS", true); err != nil {
		return j, err
	}
	if j.LocalRank, err = atoi(getenv, "SLURM_LOCALID", false); err != nil {
		return j, err
	}
	if getenv("SLURM_NODEID") != "" {
		if j.NodeRank, err = atoi(getenv, "SLURM_NODEID", false); err != nil {
			return j, err
		}
	}
	j.JobID = "slurm-" + getenv("SLURM_JOB_ID") + "." + getenv("SLURM_STEP_ID")
	j.Coordinator = getenv(Coordinator)
	if j.Coordinator == "" {
		// The step's nodes, when srun ran on a subset of the allocation.
		list := getenv("SLURM_STEP_NODELIST")
		if list == "" {
			list = getenv("SLURM_NODELIST")
		}
		nodes, err := ExpandNodeList(list)
		if err != nil {
			return j, err
		}
		port, err := portFrom(getenv, CoordinatorPort, DefaultPort)
		if err != nil {
			return j, err
		}
		j.Coordinator = net.JoinHostPort(nodes[0], strconv.Itoa(port))
	}
	j.HostCoordinator = j.Rank == 0
	return j, nil
}

func fromKubernetes(getenv func(string) string) (Job, error) {
	j := Job{Source: "kubernetes", JobID: "k8s"}
	var err error
	if j.Rank, err = atoi(getenv, "JOB_COMPLETION_INDEX", true); err != nil {
		return j, err
	}
	if j.World, err = atoi(getenv, WorldSize, true); err != nil {
		return j, fmt.Errorf("%w (set it in the Job spec to .spec.completions)", err)
	}
	j.NodeRank, j.LocalRank = j.Rank, 0
	j.Coordinator = getenv(Coordinator)
	if j.Coordinator == "" {
		return j, fmt.Errorf("%s is not set (point it at pod 0 through the headless Service, e.g. strand-0.strand:%d)", Coordinator, DefaultPort)
	}
	j.HostCoordinator = j.Rank == 0
	return j, nil
}

func fromTorchrun(getenv func(string) string) (Job, error) {
	j := Job{Source: "torchrun", JobID: "torchrun", NodeRank: -1}
	var err error
	if j.Rank, err = atoi(getenv, "RANK", true); err != nil {
		return j, err
	}
	if j.World, err = atoi(getenv, "WORLD_SIZE", true); err != nil {
		return j, err
	}
	if j.LocalRank, err = atoi(getenv, "LOCAL_RANK", false); err != nil {
		return j, err
	}
	if getenv("GROUP_RANK") != "" {
		if j.NodeRank, err = atoi(getenv, "GROUP_RANK", false); err != nil {
			return j, err
		}
	}
	// torchrun's own agent may already listen on MASTER_PORT; a separate
	// STRAND_COORDINATOR_PORT avoids the clash.
	port, err := portFrom(getenv, "MASTER_PORT", DefaultPort)
	if err != nil {
		return j, err
	}
	if port, err = portFrom(getenv, CoordinatorPort, port); err != nil {
		return j, err
	}
	j.Coordinator = net.JoinHostPort(getenv("MASTER_ADDR"), strconv.Itoa(port))
	j.HostCoordinator = j.Rank == 0
	return j, nil
}

// ParseMesh parses "dp,tp,pp".
func ParseMesh(s string) (dp, tp, pp int, err error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("%s=%q: want dp,tp,pp", Mesh, s)
	}
	var v [3]int
	for i, p := range parts {
		if v[i], err = strconv.Atoi(strings.TrimSpace(p)); err != nil || v[i] <= 0 {
			return 0, 0, 0, fmt.Errorf("%s=%q: degree %q is not a positive integer", Mesh, s, p)
		}
	}
	return v[0], v[1], v[2], nil
}

// FormatMesh renders degrees for the Mesh variable.
func FormatMesh(dp, tp, pp int) string { return fmt.Sprintf("%d,%d,%d", dp, tp, pp) }

func atoi(getenv func(string) string, name string, required bool) (int, error) {
	v := getenv(name)
	if v == "" {
		if required {
			return 0, fmt.Errorf("%s is not set", name)
		}
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

func portFrom(getenv func(string) string, name string, def int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("%s=%q is not a port", name, v)
	}
	return p, nil
}
