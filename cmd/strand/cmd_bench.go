package main

import (
	"context"
	"fmt"
	"io"
	"os"

	benchcoll "github.com/strand-ml/strand/collective/collbench"
)

// runBenchCollective is `strand bench collective`: it starts --nproc local
// ranks (re-running this binary) and prints an nccl-tests style table.
// The work is in package collective/collbench.
func runBenchCollective(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench collective", stderr)
	var cfg benchcoll.Config
	fs.StringVar(&cfg.Op, "op", "allreduce", "allreduce, allgather, reducescatter, broadcast or sendrecv")
	fs.IntVar(&cfg.NProc, "nproc", 2, "number of local ranks (processes)")
	fs.StringVar(&cfg.Transport, "transport", "tcp", "transport: tcp, shm (shared memory), auto (shm inside a node, tcp between nodes) or rdma")
	fs.StringVar(&cfg.Provider, "rdma-provider", "", "rdma verbs provider: ibverbs (a device) or soft (software, runs anywhere)")
	minS := fs.String("min", "4K", "smallest buffer (bytes; K, M, G suffixes)")
	maxS := fs.String("max", "64M", "largest buffer")
	fs.Int64Var(&cfg.Factor, "factor", 2, "size multiplier between steps")
	fs.StringVar(&cfg.DType, "dtype", "f32", "element type: f32, bf16 or f16")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object per size")
	fs.StringVar(&cfg.Bind, "bind", "127.0.0.1:0", "listen address: host:port, CIDR or interface")
	iface := fs.String("iface", "", "listen on this interface's address (overrides --bind)")
	fs.IntVar(&cfg.Streams, "streams", 0, "TCP sockets per peer pair (0: transport default)")
	fs.Float64Var(&cfg.Budget, "budget", 0.3, "seconds of timed calls per size")
	fs.IntVar(&cfg.Procs, "procs", 0, "GOMAXPROCS per rank (0: cores / ranks, at least 1; a GOMAXPROCS in the environment wins)")
	fs.DurationVar(&cfg.Spin, "spin", 0, "tcp: how long small receives poll before parking (0: automatic, <0: never)")
	segS := fs.String("segment", "0", "ring pipelining segment size (0: library default)")
	fs.BoolVar(&cfg.TLS, "tls", false, "tcp: mutual TLS on every socket, loopback included (job CA from the token, as --tls-auto jobs use between hosts), to measure its cost")
	fs.BoolVar(&cfg.NoWindows, "no-windows", false, "ranks that share memory exchange messages for small all-reduces too (no shared windows), to measure what the windows save")
	fs.BoolVar(&cfg.Flat, "flat", false, "with --transport auto: keep the flat ring (no hierarchical all-reduce)")
	fs.IntVar(&cfg.NNodes, "nnodes", 1, "split the ranks over this many network namespaces (\"nodes\", needs root and iproute2); with --transport auto: shared memory inside a node, tcp between nodes, hierarchical all-reduce")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *iface != "" {
		cfg.Bind = *iface
	}
	var err error
	if cfg.Min, err = benchcoll.ParseSize(*minS); err != nil {
		return usageError{"--min: " + err.Error()}
	}
	if cfg.Max, err = benchcoll.ParseSize(*maxS); err != nil {
		return usageError{"--max: " + err.Error()}
	}
	seg, err := benchcoll.ParseSize(*segS)
	if err != nil {
		return usageError{"--segment: " + err.Error()}
	}
	cfg.Segment = int(seg)
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if benchcoll.IsWorker() {
		return benchcoll.Worker(ctx, cfg, stdout, stderr)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary to start ranks: %w", err)
	}
	return benchcoll.Run(ctx, cfg, exe, append([]string{"bench", "collective"}, args...), stdout, stderr)
}
