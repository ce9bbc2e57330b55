package collbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coll "github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/coordinator"
	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/dirstore"
	"github.com/strand-ml/strand/transport/hybrid"
	"github.com/strand-ml/strand/transport/rdma"
	"github.com/strand-ml/strand/transport/shm"
	"github.com/strand-ml/strand/transport/tcp"
)

// Config is one benchmark run.
type Config struct {
	Op        string        // allreduce, allgather, reducescatter, broadcast, sendrecv
	NProc     int           // ranks (local processes)
	Transport string        // "tcp", "rdma", "shm" or "auto" (shm between ranks of one node, tcp between nodes)
	Provider  string        // rdma: verbs provider ("soft" runs anywhere, "ibverbs" needs a device)
	Min, Max  int64         // buffer sizes in bytes, Min, Min*Factor, ... <= Max
	Factor    int64         // size step (default 2)
	DType     string        // f32 or bf16 (or f16)
	Bind      string        // listen address spec for every rank (default 127.0.0.1:0)
	Streams   int           // TCP sockets per peer pair (0: transport default)
	Budget    float64       // seconds of timed calls per size (default 0.3)
	Segment   int           // ring/chain pipelining segment in bytes (0: collective's default)
	Spin      time.Duration // tcp: receive spin before parking (0: transport's automatic choice, <0: never)
	// Procs is GOMAXPROCS for each rank process. 0: the machine's cores
	// divided among the ranks (at least 1), as MPI ranks and Gloo with
	// OMP_NUM_THREADS=1 get; a GOMAXPROCS already in the environment wins.
	Procs   int
	JSON    bool // one JSON object per size instead of the table
	Timeout time.Duration
	// NNodes > 1 splits the ranks over that many network namespaces
	// joined by veth links (needs root and iproute2), each a "node": with
	// --transport auto, shared memory inside a node, TCP between nodes
	// and the hierarchical all-reduce; with tcp, the flat ring over TCP.
	NNodes int
	// Flat keeps the flat ring under --transport auto (no node layout),
	// to separate the hierarchical algorithm's effect from the transports'.
	Flat bool
	// TLS runs every TCP socket, loopback included, over mutual TLS with
	// certificates of the job CA derived from the run's token (as a job
	// with --tls-auto does between hosts), to measure what TLS costs.
	TLS bool
	// NoWindows makes ranks that share memory exchange messages anyway
	// (collective.Options.NoSharedMemory), to measure what the shared
	// windows save.
	NoWindows bool
}

// withTLS sets tc up for Config.TLS.
func (c *Config) withTLS(tc *tcp.Config, token string) error {
	if !c.TLS {
		return nil
	}
	var err error
	if tc.TLS, err = coordinator.JobDataTLS(token); err != nil {
		return fmt.Errorf("--tls: %w", err)
	}
	tc.TLSLoopback = true
	return nil
}

// Ops lists the benchmarkable operations.
var Ops = []string{"allreduce", "allgather", "reducescatter", "broadcast", "sendrecv"}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if !slices.Contains(Ops, c.Op) {
		return fmt.Errorf("--op %q: want one of %s", c.Op, strings.Join(Ops, ", "))
	}
	if c.NProc < 1 || c.NProc > 64 {
		return fmt.Errorf("--nproc %d: want 1..64", c.NProc)
	}
	if c.Transport == "" {
		c.Transport = "tcp"
	}
	switch c.Transport {
	case "tcp", "shm", "auto":
	case "rdma":
		if c.Provider == "" {
			c.Provider = "ibverbs"
		}
		if err := rdma.Available(c.Provider); err != nil {
			return fmt.Errorf("--transport rdma: %w (use --rdma-provider soft for the software provider)", err)
		}
	default:
		return fmt.Errorf("--transport %q: want tcp, shm, auto or rdma", c.Transport)
	}
	if c.Factor == 0 {
		c.Factor = 2
	}
	if c.Min <= 0 || c.Max < c.Min || c.Factor < 2 {
		return fmt.Errorf("sizes: need 0 < --min <= --max and --factor >= 2 (got %d, %d, %d)", c.Min, c.Max, c.Factor)
	}
	if _, err := parseDType(c.DType); err != nil {
		return err
	}
	if c.Bind == "" {
		c.Bind = "127.0.0.1:0"
	}
	if c.Budget <= 0 {
		c.Budget = 0.3
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.NNodes <= 0 {
		c.NNodes = 1
	}
	if c.NNodes > 1 && (c.NNodes > 8 || c.NProc%c.NNodes != 0) {
		return fmt.Errorf("--nnodes %d: want 1..8 dividing --nproc %d", c.NNodes, c.NProc)
	}
	return nil
}

func parseDType(s string) (coll.DType, error) {
	switch s {
	case "", "f32", "float32":
		return coll.Float32, nil
	case "bf16", "bfloat16":
		return coll.BFloat16, nil
	case "f16", "float16":
		return coll.Float16, nil
	}
	return 0, fmt.Errorf("--dtype %q: want f32, bf16 or f16", s)
}

// ParseSize reads "4K", "64M", "1G", "4096" (binary multiples).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: want a number with optional K, M or G", s)
	}
	return v * mult, nil
}

// Result is one size's measurement (one JSON line).
type Result struct {
	Op        string  `json:"op"`
	NProc     int     `json:"nproc"`
	DType     string  `json:"dtype"`
	SizeBytes int64   `json:"size_bytes"`
	Count     int     `json:"count"`
	Iters     int     `json:"iters"`
	TimeUS    float64 `json:"time_us"`
	AlgBW     float64 `json:"algbw_gbps"`
	BusBW     float64 `json:"busbw_gbps"`
	// CPUUS is the CPU time (user + system, getrusage) all ranks together
	// spent per call during the timed calls: less sensitive than TimeUS to
	// other processes competing for the cores.
	CPUUS float64 `json:"cpu_us"`
	OK    bool    `json:"ok"`
}

// BusFactor is nccl-tests' bus bandwidth factor for op on n ranks.
func BusFactor(op string, n int) float64 {
	switch op {
	case "allreduce":
		return 2 * float64(n-1) / float64(n)
	case "allgather", "reducescatter":
		return float64(n-1) / float64(n)
	}
	return 1
}

const (
	envRank  = "STRAND_BENCH_RANK"
	envDir   = "STRAND_BENCH_DIR"
	envToken = "STRAND_BENCH_TOKEN"
	envJob   = "STRAND_BENCH_JOB"
	envBind  = "STRAND_BENCH_BIND" // per-rank --bind (the node's address with --nnodes)
)

// IsWorker reports whether this process was started by Run as a rank.
func IsWorker() bool { return os.Getenv(envRank) != "" }

// Run starts cfg.NProc copies of exe (with args, the same command line)
// as ranks, forwards rank 0's output to stdout and everyone's log to
// stderr, and fails if any rank fails (stopping the others).
func Run(ctx context.Context, cfg Config, exe string, args []string, stdout, stderr io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "strand-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var nodes *netnsNodes
	if cfg.NNodes > 1 {
		if nodes, err = newNetnsNodes(cfg.NNodes); err != nil {
			return fmt.Errorf("--nnodes %d: %w", cfg.NNodes, err)
		}
		defer nodes.remove()
	}
	errs := make([]error, cfg.NProc)
	var wg sync.WaitGroup
	for r := 0; r < cfg.NProc; r++ {
		cmd := exec.CommandContext(ctx, exe, args...)
		var extra []string
		if nodes != nil {
			node := r / (cfg.NProc / cfg.NNodes)
			cmd = exec.CommandContext(ctx, nodes.ip, append([]string{"netns", "exec", nodes.ns[node], exe}, args...)...)
			extra = append(extra, envBind+"="+nodes.addr[node]+":0")
		}
		cmd.Env = append(os.Environ(), envRank+"="+strconv.Itoa(r), envDir+"="+dir,
			envToken+"="+hex.EncodeToString(secret), envJob+"="+"bench-"+hex.EncodeToString(secret[:4]))
		cmd.Env = append(cmd.Env, extra...)
		if procs := cfg.rankProcs(); procs > 0 {
			cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
		}
		cmd.Stderr = stderr
		if r == 0 {
			cmd.Stdout = stdout
		}
		if err := cmd.Start(); err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("start rank %d: %w", r, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[r] = fmt.Errorf("rank %d: %w", r, err)
				cancel() // one rank failing stops the job
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// rankProcs is the GOMAXPROCS Run gives each rank, or 0 to leave the
// environment's. Ranks of one machine share its cores: with more Go
// threads than their share, the reader, reducer and sender goroutines of
// one rank hand work to each other across threads (a wake-up each) and
// the ranks' threads preempt each other; with one P per rank on 2 ranks
// and 2 cores, a 4 KiB all-reduce took about 53 us instead of 85-90 and
// 1 MiB about 15% less, with large sizes unchanged (interleaved runs,
// loaded machine).
func (c *Config) rankProcs() int {
	if c.Procs > 0 {
		return c.Procs
	}
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	return max(1, runtime.NumCPU()/c.NProc)
}

// Worker is one rank's part of Run, configured by the environment Run
// sets. Rank 0 writes the report to out.
func Worker(ctx context.Context, cfg Config, out, logw io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rank, err := strconv.Atoi(os.Getenv(envRank))
	if err != nil {
		return fmt.Errorf("%s: %w", envRank, err)
	}
	if b := os.Getenv(envBind); b != "" {
		cfg.Bind = b
	}
	return work(ctx, cfg, rank, dirstore.New(os.Getenv(envDir)), os.Getenv(envJob), os.Getenv(envToken), out, logw)
}

// work is one rank's benchmark, given its rendezvous.
func work(ctx context.Context, cfg Config, rank int, store rendezvous.Store, job, token string, out, logw io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	dt, _ := parseDType(cfg.DType)
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var tr transport.Transport
	var err error
	var nodes []string // node labels for the hierarchical all-reduce (auto)
	transportName := "tcp (bind " + cfg.Bind + ")"
	switch cfg.Transport {
	case "shm":
		if tr, err = shm.Dial(dctx, shm.Config{Rank: rank, Size: cfg.NProc, Store: store, JobID: job,
			Logger: slog.New(slog.NewTextHandler(logw, nil))}); err != nil {
			return err
		}
		transportName = "shm"
	case "auto":
		if tr, transportName, nodes, err = dialAuto(dctx, cfg, rank, store, job, token, logw); err != nil {
			return err
		}
		if cfg.Flat {
			nodes = nil
		}
	case "rdma":
		p, err := rdma.ProviderByName(cfg.Provider)
		if err != nil {
			return err
		}
		if tr, err = rdma.Dial(dctx, rdma.Config{Rank: rank, Size: cfg.NProc, Store: store, Provider: p}); err != nil {
			return err
		}
		transportName = "rdma/" + p.Name()
	default:
		tc := tcp.Config{Rank: rank, Size: cfg.NProc, Store: store,
			JobID: job, Token: token, Bind: cfg.Bind, Streams: cfg.Streams, Spin: cfg.Spin,
			Logger: slog.New(slog.NewTextHandler(logw, nil))}
		if err := cfg.withTLS(&tc, token); err != nil {
			return err
		}
		if tr, err = tcp.Dial(dctx, tc); err != nil {
			return err
		}
		if cfg.TLS {
			transportName = "tcp+tls (bind " + cfg.Bind + ")"
		}
	}
	defer tr.Close()
	ranks := make([]int, cfg.NProc)
	for i := range ranks {
		ranks[i] = i
	}
	c, err := coll.New(tr, ranks, coll.Options{Timeout: cfg.Timeout, SegmentBytes: cfg.Segment, Nodes: nodes, NoSharedMemory: cfg.NoWindows})
	if err != nil {
		return err
	}
	defer c.Close()
	b := &bench{cfg: cfg, c: c, dt: dt, rank: rank, n: cfg.NProc}
	if c.Nodes() != nil {
		transportName += fmt.Sprintf(", hierarchical all-reduce over nodes %v", c.Nodes())
	}
	if rank == 0 && !cfg.JSON {
		fmt.Fprintf(out, "# strand bench collective: op %s, %d ranks, %v, transport %s\n", cfg.Op, cfg.NProc, dt, transportName)
		fmt.Fprintf(out, "# busbw = algbw x %.3f (nccl-tests factor); time = median of the slowest rank\n", BusFactor(cfg.Op, cfg.NProc))
		fmt.Fprintf(out, "# cpu = CPU time (user + system) of all ranks together per call; GOMAXPROCS %d per rank\n", runtime.GOMAXPROCS(0))
		fmt.Fprintf(out, "%12s %12s %5s %7s %11s %12s %12s %11s %6s\n", "size(B)", "count", "type", "iters", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "cpu(us)", "check")
	}
	enc := json.NewEncoder(out)
	for size := cfg.Min; size <= cfg.Max; size *= cfg.Factor {
		res, err := b.size(ctx, size)
		if err != nil {
			return fmt.Errorf("size %d: %w", size, err)
		}
		if rank != 0 {
			continue
		}
		if cfg.JSON {
			if err := enc.Encode(res); err != nil {
				return err
			}
			continue
		}
		check := "ok"
		if !res.OK {
			check = "WRONG"
		}
		fmt.Fprintf(out, "%12d %12d %5s %7d %11.1f %12.3f %12.3f %11.1f %6s\n", res.SizeBytes, res.Count, res.DType, res.Iters, res.TimeUS, res.AlgBW, res.BusBW, res.CPUUS, check)
	}
	return c.Barrier(ctx) // nobody closes while a peer still reads
}

type bench struct {
	cfg     Config
	c       *coll.Comm
	dt      coll.DType
	rank, n int
}

// val is rank r's element i: small integers, exact in every dtype after
// summing up to 64 ranks.
func val(r, i int) float32 { return float32(r%3 + i%3) }

// buffer holds one typed buffer and float32 accessors.
type buffer struct {
	buf coll.Buffer
	get func(i int) float32
	set func(i int, v float32)
}

func newBuffer(dt coll.DType, count int) buffer {
	switch dt {
	case coll.BFloat16, coll.Float16:
		b := make([]uint16, count)
		to, from := coll.BF16FromFloat32, coll.Float32FromBF16
		var cb coll.Buffer = coll.BF16(b)
		if dt == coll.Float16 {
			to, from, cb = coll.F16FromFloat32, coll.Float32FromF16, coll.F16(b)
		}
		return buffer{buf: cb, get: func(i int) float32 { return from(b[i]) }, set: func(i int, v float32) { b[i] = to(v) }}
	}
	b := make([]float32, count)
	return buffer{buf: coll.F32(b), get: func(i int) float32 { return b[i] }, set: func(i int, v float32) { b[i] = v }}
}

// fill prepares rank inputs for op; expect returns the correct output
// element i for this rank, or ok=false where the output is unspecified.
func (b *bench) fill(x buffer, count int) {
	for i := 0; i < count; i++ {
		switch b.cfg.Op {
		case "broadcast":
			if b.rank == 0 {
				x.set(i, val(0, i))
			} else {
				x.set(i, -1)
			}
		default:
			x.set(i, val(b.rank, i))
		}
	}
}

func (b *bench) expect(i, count int) (float32, bool) {
	switch b.cfg.Op {
	case "allreduce":
		var s float32
		for r := 0; r < b.n; r++ {
			s += val(r, i)
		}
		return s, true
	case "reducescatter":
		lo, hi := b.c.Chunk(count)
		if i < lo || i >= hi {
			return 0, false
		}
		var s float32
		for r := 0; r < b.n; r++ {
			s += val(r, i)
		}
		return s, true
	case "allgather":
		for r := 0; r < b.n; r++ {
			if lo, hi := coll.Chunk(count, b.n, r); i >= lo && i < hi {
				return val(r, i), true
			}
		}
	case "broadcast":
		return val(0, i), true
	case "sendrecv":
		return val((b.rank+b.n-1)%b.n, i), true
	}
	return 0, false
}

// once runs one call of the op on x (in) and y (sendrecv's receive side).
func (b *bench) once(ctx context.Context, x, y buffer) error {
	switch b.cfg.Op {
	case "allreduce":
		return b.c.AllReduce(ctx, x.buf, coll.Sum)
	case "reducescatter":
		return b.c.ReduceScatter(ctx, x.buf, coll.Sum)
	case "allgather":
		return b.c.AllGather(ctx, x.buf)
	case "broadcast":
		return b.c.Broadcast(ctx, x.buf, 0)
	case "sendrecv":
		if b.n == 1 {
			copyBuf(y, x, x.buf.Len())
			return nil
		}
		h := b.c.SendAsync(ctx, x.buf, (b.rank+1)%b.n)
		err := b.c.Recv(ctx, y.buf, (b.rank+b.n-1)%b.n)
		return errors.Join(err, h.Wait(ctx))
	}
	return fmt.Errorf("unknown op %q", b.cfg.Op)
}

func copyBuf(dst, src buffer, n int) {
	for i := 0; i < n; i++ {
		dst.set(i, src.get(i))
	}
}

// size measures one buffer size.
func (b *bench) size(ctx context.Context, size int64) (Result, error) {
	count := int(size / int64(b.dt.Size()))
	x, y := newBuffer(b.dt, count), newBuffer(b.dt, count)
	b.fill(x, count)
	if err := b.once(ctx, x, y); err != nil {
		return Result{}, err
	}
	out := x
	if b.cfg.Op == "sendrecv" {
		out = y
	}
	ok := true
	for i := 0; i < count && ok; i++ {
		if want, defined := b.expect(i, count); defined && out.get(i) != want {
			ok = false
		}
	}
	// Agree on correctness and on an iteration count (from the slowest
	// rank's warm-up), so every rank makes the same calls.
	warm := 2
	start := time.Now()
	for k := 0; k < warm; k++ {
		if err := b.once(ctx, x, y); err != nil {
			return Result{}, err
		}
	}
	per := time.Since(start).Seconds() / float64(warm)
	okv := float32(0)
	if !ok {
		okv = 1
	}
	agree := coll.F32{float32(per), okv}
	if err := b.c.AllReduce(ctx, agree, coll.Max); err != nil {
		return Result{}, err
	}
	iters := int(b.cfg.Budget / max(float64(agree[0]), 1e-7))
	iters = min(max(iters, 5), 2000)
	times := make([]float64, iters)
	cpu0, err := cpuTime()
	if err != nil {
		return Result{}, err
	}
	for k := range times {
		t0 := time.Now()
		if err := b.once(ctx, x, y); err != nil {
			return Result{}, err
		}
		times[k] = time.Since(t0).Seconds()
	}
	cpu1, err := cpuTime()
	if err != nil {
		return Result{}, err
	}
	slices.Sort(times)
	med := coll.F32{float32(times[len(times)/2])}
	if err := b.c.AllReduce(ctx, med, coll.Max); err != nil {
		return Result{}, err
	}
	cpu := coll.F32{float32((cpu1 - cpu0).Seconds() / float64(iters))}
	if err := b.c.AllReduce(ctx, cpu, coll.Sum); err != nil {
		return Result{}, err
	}
	t := float64(med[0])
	alg := float64(count*b.dt.Size()) / t / 1e9
	return Result{Op: b.cfg.Op, NProc: b.n, DType: b.dt.String(), SizeBytes: int64(count * b.dt.Size()), Count: count, Iters: iters,
		TimeUS: t * 1e6, AlgBW: alg, BusBW: alg * BusFactor(b.cfg.Op, b.n), CPUUS: float64(cpu[0]) * 1e6, OK: agree[1] == 0}, nil
}

// cpuTime is this process's user plus system CPU time so far.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// dialAuto connects ranks that share a host identity (shm.HostID: the
// same kernel, pid and network namespace) through shared memory and the
// others through TCP, as a job's --transport auto does.
func dialAuto(ctx context.Context, cfg Config, rank int, store rendezvous.Store, job, token string, logw io.Writer) (transport.Transport, string, []string, error) {
	me := shm.HostID()
	if err := store.Set(ctx, "host/"+strconv.Itoa(rank), []byte(me)); err != nil {
		return nil, "", nil, err
	}
	var local, remote []int
	labels := make([]string, cfg.NProc)
	for r := range cfg.NProc {
		v, err := store.Get(ctx, "host/"+strconv.Itoa(r))
		if err != nil {
			return nil, "", nil, err
		}
		labels[r] = string(v)
		switch {
		case r == rank:
		case string(v) == me:
			local = append(local, r)
		default:
			remote = append(remote, r)
		}
	}
	logger := slog.New(slog.NewTextHandler(logw, nil))
	var routes []hybrid.Route
	if len(local) > 0 {
		s, err := shm.Dial(ctx, shm.Config{Rank: rank, Size: cfg.NProc, Store: store, JobID: job, Peers: local, Logger: logger})
		if err != nil {
			return nil, "", nil, err
		}
		routes = append(routes, hybrid.Route{Name: "shm", Transport: s, Peers: local})
	}
	if len(remote) > 0 {
		tc := tcp.Config{Rank: rank, Size: cfg.NProc, Store: store, JobID: job, Token: token, Bind: cfg.Bind,
			Streams: cfg.Streams, Spin: cfg.Spin, Logger: logger}
		if err := cfg.withTLS(&tc, token); err != nil {
			return nil, "", nil, err
		}
		t, err := tcp.Dial(ctx, tc)
		if err != nil {
			return nil, "", nil, err
		}
		routes = append(routes, hybrid.Route{Name: "tcp", Transport: t, Peers: remote})
	}
	name := fmt.Sprintf("auto (rank 0: shm to %v, tcp to %v)", local, remote)
	if len(routes) == 1 {
		return routes[0].Transport, name, labels, nil
	}
	if len(routes) == 0 { // one rank
		s, err := shm.Dial(ctx, shm.Config{Rank: rank, Size: cfg.NProc, Store: store, JobID: job, Peers: []int{}, Logger: logger})
		return s, name, labels, err
	}
	h, err := hybrid.New(rank, cfg.NProc, routes...)
	return h, name, labels, err
}

// netnsNodes are network namespaces, one per "node": node i has address
// 10.233.i.1 on its loopback, and every pair of nodes a veth link with a
// route to each other's address.
type netnsNodes struct {
	ip   string
	ns   []string
	addr []string
}

func newNetnsNodes(n int) (*netnsNodes, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, errors.New("iproute2 (the ip command) is not installed")
	}
	id := os.Getpid() % 100000
	nn := &netnsNodes{ip: ip}
	run := func(args ...string) error {
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for i := range n {
		ns := fmt.Sprintf("strand-bench-%d-%d", id, i)
		if err := run("netns", "add", ns); err != nil {
			nn.remove()
			return nil, err
		}
		nn.ns = append(nn.ns, ns)
		if err := run("-n", ns, "link", "set", "lo", "up"); err != nil {
			nn.remove()
			return nil, err
		}
		// Node i's address, on its loopback; routes to the others go
		// over the veth links below.
		nn.addr = append(nn.addr, fmt.Sprintf("10.233.%d.1", i))
		if err := run("-n", ns, "addr", "add", nn.addr[i]+"/32", "dev", "lo"); err != nil {
			nn.remove()
			return nil, err
		}
	}
	for a := range n {
		for b := a + 1; b < n; b++ {
			va, vb := fmt.Sprintf("sb%d%d%da", id%1000, a, b), fmt.Sprintf("sb%d%d%db", id%1000, a, b)
			steps := [][]string{
				{"link", "add", va, "type", "veth", "peer", "name", vb},
				{"link", "set", va, "netns", nn.ns[a]}, {"link", "set", vb, "netns", nn.ns[b]},
				{"-n", nn.ns[a], "link", "set", va, "up"}, {"-n", nn.ns[b], "link", "set", vb, "up"},
				{"-n", nn.ns[a], "route", "add", nn.addr[b] + "/32", "dev", va},
				{"-n", nn.ns[b], "route", "add", nn.addr[a] + "/32", "dev", vb},
			}
			for _, s := range steps {
				if err := run(s...); err != nil {
					nn.remove()
					return nil, err
				}
			}
		}
	}
	return nn, nil
}

// remove deletes the namespaces (and with them the veth links).
func (nn *netnsNodes) remove() {
	for _, ns := range nn.ns {
		_ = exec.Command(nn.ip, "netns", "del", ns).Run()
	}
}
