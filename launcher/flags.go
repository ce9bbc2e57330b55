package launcher

import (
	"flag"
	"fmt"
	"time"

	"github.com/strand-ml/strand/mesh"
)

// Flags are the command-line flags every launching subcommand shares
// (strand train, strand check), registered by AddFlags.
type Flags struct {
	NProc        int    // local job: number of worker processes
	NNodes       int    // multi-node job: number of nodes
	NodeRank     int    // multi-node job: this node's index
	Coordinator  string // multi-node job: HOST:PORT of node 0's coordinator
	NProcPerNode int    // multi-node job: workers per node
	DP, TP, PP   int    // mesh degrees; DP 0 = world/(TP*PP)
	Transport    string // "auto", "tcp" or "rdma"
	Bind         string // transport bind spec: host:port, CIDR or interface
	Token        string // job token (multi-node: the same on every node)
	LogFormat    string // "console" or "json"
	JoinTimeout  time.Duration
	// ConnectTimeout bounds a worker's retries while the coordinator is
	// not up yet.
	ConnectTimeout time.Duration
	Metrics        string // coordinator /metrics listen address, "" = off
	// WorkerMetricsPort, when positive, makes each worker serve /metrics
	// on port WorkerMetricsPort + local rank.
	WorkerMetricsPort int
	// TLSCert and TLSKey enable TLS on the coordinator; TLSCA is what
	// workers trust (default TLSCert, for a self-signed certificate).
	TLSCert, TLSKey, TLSCA string
	// TLSAuto enables TLS with a job CA derived from the token instead of
	// files (every node derives the same one).
	TLSAuto bool
	// RDMAProvider is the verbs provider for --transport rdma.
	RDMAProvider string
	// MinNodes is the fewest nodes an elastic restart may continue with
	// (0: all of --nnodes); RejoinTimeout is how long node 0 waits for the
	// other nodes to come back after a failure (see Regroup).
	MinNodes      int
	RejoinTimeout time.Duration
}

// AddFlags registers the launcher flags on fs.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.IntVar(&f.NProc, "nproc", 0, "run a local job with this many worker processes")
	fs.IntVar(&f.NNodes, "nnodes", 1, "number of nodes of a multi-node job")
	fs.IntVar(&f.NodeRank, "node-rank", 0, "this node's index in a multi-node job (node 0 hosts the coordinator)")
	fs.StringVar(&f.Coordinator, "coordinator", "", "HOST:PORT of the coordinator (multi-node jobs)")
	fs.IntVar(&f.NProcPerNode, "nproc-per-node", 0, "workers per node in a multi-node job")
	fs.IntVar(&f.DP, "dp", 0, "data-parallel degree (default: world / (tp*pp))")
	fs.IntVar(&f.TP, "tp", 1, "tensor-parallel degree")
	fs.IntVar(&f.PP, "pp", 1, "pipeline-parallel degree")
	fs.StringVar(&f.Transport, "transport", "auto", "collective transport: auto (shared memory between ranks on one host; between hosts RDMA when every rank has a device, else TCP), shm, tcp or rdma")
	fs.StringVar(&f.Bind, "bind", "", "transport address: host:port, CIDR (10.0.0.0/8) or interface (eth0); default: the address that reaches the coordinator")
	fs.StringVar(&f.Token, "token", "", "job token (default: random for local jobs, $STRAND_TOKEN for multi-node jobs)")
	fs.StringVar(&f.LogFormat, "log-format", "console", "log format: console or json")
	fs.DurationVar(&f.JoinTimeout, "join-timeout", 2*time.Minute, "how long the coordinator waits for every worker to join")
	fs.DurationVar(&f.ConnectTimeout, "connect-timeout", time.Minute, "how long a worker retries a coordinator that is not up yet")
	fs.StringVar(&f.Metrics, "metrics", "", "serve coordinator Prometheus metrics on this address (e.g. 127.0.0.1:9400)")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "coordinator TLS certificate (PEM); enables TLS")
	fs.StringVar(&f.TLSKey, "tls-key", "", "coordinator TLS private key (PEM)")
	fs.BoolVar(&f.TLSAuto, "tls-auto", false, "TLS for the coordinator with a job CA every node derives from the job token (no certificate files to distribute)")
	fs.StringVar(&f.TLSCA, "tls-ca", "", "CA certificate workers trust for the coordinator (default: --tls-cert, for self-signed ones)")
	fs.StringVar(&f.RDMAProvider, "rdma-provider", "", "verbs provider for --transport rdma: ibverbs (default, hardware) or soft (pure Go, one machine)")
	fs.IntVar(&f.MinNodes, "min-nodes", 0, "elastic restart of a multi-node job: continue with at least this many nodes, shrinking data parallelism (default: --nnodes)")
	fs.DurationVar(&f.RejoinTimeout, "rejoin-timeout", 30*time.Second, "elastic restart: how long node 0 waits for the other nodes to come back")
	fs.IntVar(&f.WorkerMetricsPort, "worker-metrics-port", 0, "serve each worker's Prometheus metrics on this port + its local rank (0 = off)")
	return f
}

// MultiNode reports whether the flags describe a multi-node job.
func (f *Flags) MultiNode() bool { return f.NNodes > 1 || f.Coordinator != "" }

// Launching reports whether the flags ask for a launcher (--nproc or a
// multi-node job), as opposed to a single in-process run.
func (f *Flags) Launching() bool { return f.NProc > 0 || f.MultiNode() }

// MinNodesOrAll is --min-nodes, defaulting to --nnodes.
func (f *Flags) MinNodesOrAll() int {
	if f.MinNodes == 0 {
		return f.NNodes
	}
	return f.MinNodes
}

// World is the job's number of ranks.
func (f *Flags) World() int {
	if f.MultiNode() {
		return f.NNodes * f.NProcPerNode
	}
	return max(f.NProc, 1)
}

// Mesh derives the mesh for a world of ranks from --dp/--tp/--pp.
func (f *Flags) Mesh(world int) (mesh.Mesh, error) { return mesh.ForWorld(world, f.DP, f.TP, f.PP) }

// Validate checks the flags are consistent.
func (f *Flags) Validate() error {
	switch {
	case f.NProc < 0:
		return fmt.Errorf("--nproc %d must not be negative", f.NProc)
	case f.NNodes < 1:
		return fmt.Errorf("--nnodes %d must be at least 1", f.NNodes)
	case f.Transport != "tcp" && f.Transport != "rdma" && f.Transport != "auto" && f.Transport != "shm":
		return fmt.Errorf("--transport %q: want auto, shm, tcp or rdma", f.Transport)
	case f.LogFormat != "console" && f.LogFormat != "json":
		return fmt.Errorf("--log-format %q: want console or json", f.LogFormat)
	case f.MinNodes < 0 || f.MinNodes > f.NNodes:
		return fmt.Errorf("--min-nodes %d outside 1..--nnodes (%d)", f.MinNodes, f.NNodes)
	case f.RejoinTimeout < 0:
		return fmt.Errorf("--rejoin-timeout %v must not be negative", f.RejoinTimeout)
	}
	if f.MultiNode() {
		switch {
		case f.Coordinator == "":
			return fmt.Errorf("a multi-node job needs --coordinator HOST:PORT (node 0's address)")
		case f.NProcPerNode < 1:
			return fmt.Errorf("a multi-node job needs --nproc-per-node")
		case f.NodeRank < 0 || f.NodeRank >= f.NNodes:
			return fmt.Errorf("--node-rank %d outside 0..%d", f.NodeRank, f.NNodes-1)
		case f.NProc > 0:
			return fmt.Errorf("--nproc is for local jobs; use --nproc-per-node with --nnodes")
		}
	}
	_, err := f.Mesh(f.World())
	return err
}
