package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/coordinator"
	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/obs"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/rdma"
	"github.com/strand-ml/strand/transport/tcp"
)

// Options configure Join. The zero value reads everything from the
// environment and uses the defaults.
type Options struct {
	// Getenv reads the job environment; default os.Getenv.
	Getenv func(string) string
	// DP, TP and PP choose the mesh when the environment does not (Slurm,
	// Kubernetes, torchrun give only the world size); DP 0 derives it.
	DP, TP, PP int
	// Transport ("auto", "shm", "tcp" or "rdma"), Bind, LogFormat and RDMAProvider
	// ("ibverbs" or "soft") apply when the environment does not say.
	Transport, Bind, LogFormat, RDMAProvider string
	// ConnectTimeout bounds the retries while the coordinator is not up
	// (default 60 s). JoinTimeout is how long a coordinator hosted by this
	// process waits for every rank (default 2 min).
	ConnectTimeout, JoinTimeout time.Duration
	// CollectiveTimeout bounds each collective without a deadline (default 5 min).
	CollectiveTimeout time.Duration
	// HeartbeatInterval is how often progress is sent (default 1 s).
	HeartbeatInterval time.Duration
	// Gossip tunes failure detection.
	Gossip coordinator.GossipConfig
	// MetricsAddr, when set, serves this worker's /metrics there.
	// MetricsPortBase, when set instead, serves it on the advertised
	// address at port MetricsPortBase + local rank.
	MetricsAddr     string
	MetricsPortBase int
	// Stderr receives the log; default os.Stderr.
	Stderr io.Writer
	// LauncherReports says the launching process reports the job's
	// failure once, with the coordinator's reason (strand's local
	// launcher): a rank then does not log the coordinator's failure notice.
	LauncherReports bool
}

// InJob reports whether this process was started as a worker: by a strand
// launcher, an srun step, a Kubernetes Indexed Job or torchrun.
func InJob() bool {
	_, ok, _ := jobenv.Detect(os.Getenv)
	return ok
}

// Runtime is a worker's membership in a running job.
type Runtime struct {
	Rank  int
	Mesh  mesh.Mesh
	Coord mesh.Coord
	// World spans every rank; DP, TP and PP are this rank's groups (a
	// group of size 1 when the degree is 1).
	World, DP, TP, PP *collective.Comm
	// Flight records this rank's recent collective calls (shared by every
	// communicator); on a failure it is sent to the coordinator, which
	// prints where the job is stuck. Pass it in collective.Options when
	// building further communicators.
	Flight *collective.FlightRecorder
	// Transport is the one world transport under every communicator;
	// TransportName says which: "shm", "tcp", "rdma/<provider>", or two
	// of them joined by "+" (shared memory on this host, the other
	// between hosts; RouteOf names each peer's).
	Transport     transport.Transport
	TransportName string
	routes        []string // per peer: the transport that carries it (transport_select.go)
	hostID        string   // $STRAND_HOST_ID: overrides shm.HostID in transport selection
	hosts         []string // per rank: host identity, when transport selection exchanged them
	Log           *zap.Logger
	Job           jobenv.Job
	// Members lists every rank's host and addresses, in rank order.
	Members []*pb.Member
	Metrics *obs.Registry

	client    *coordinator.Client
	hosted    *coordinator.Server
	gossip    *memberlist.Memberlist
	ctx       context.Context
	cancel    context.CancelCauseFunc
	stopWatch context.CancelFunc
	bg        sync.WaitGroup

	mu      sync.Mutex
	step    int64
	metrics map[string]float64
	// launcherReports: see Options.LauncherReports.
	launcherReports bool
	leaving         bool
	barrier         int
	// operatorStop: the operator asked this process to stop (OperatorStop).
	operatorStop bool
}

// verdictWait bounds how long a failing rank waits for the coordinator to
// name a dead rank before reporting its own error. It is an upper bound,
// not a fixed pause: the wait ends as soon as the coordinator's verdict
// arrives, and a rank the operator stopped does not wait at all.
const verdictWait = 3 * time.Second

// InterruptedReason is the job's failure reason when the operator stops it
// (jobenv.InterruptedReason, the launcher's words too).
const InterruptedReason = jobenv.InterruptedReason

// OperatorStop records that the operator asked this process to stop
// (Ctrl-C, SIGTERM from a launcher, scancel, a pod's termination), as
// opposed to its launcher dying. A failure this rank then leaves with is
// the operator's doing, not the rank's: Leave tells the coordinator the
// job was interrupted by the operator (blaming no rank, so every other
// rank stops at once with that reason) and does not wait for a verdict.
// A run loop that checkpoints and leaves cleanly is unaffected.
func (rt *Runtime) OperatorStop() {
	rt.mu.Lock()
	rt.operatorStop = true
	rt.mu.Unlock()
}

func (rt *Runtime) operatorStopped() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.operatorStop
}

// RankDeadError is the cause of Context() when a rank died or failed.
type RankDeadError struct {
	Rank   int
	Reason string
}

func (e *RankDeadError) Error() string { return "job failed: " + e.Reason }

// ExitCode is the process exit code a worker ending with this error
// should use: jobenv.InterruptedExitCode when the operator stopped the
// job (no rank failed), 1 otherwise.
func (e *RankDeadError) ExitCode() int {
	if e.Rank < 0 && e.Reason == InterruptedReason {
		return jobenv.InterruptedExitCode
	}
	return 1
}

// Join joins the job this process belongs to. See the package comment.
func Join(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = time.Second
	}
	job, ok, err := jobenv.Detect(opts.Getenv)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if !ok {
		return nil, errors.New("worker: not started as part of a job (use --nproc N, srun, a Kubernetes Indexed Job or torchrun)")
	}
	if opts.Transport != "" && job.Transport == "" {
		job.Transport = opts.Transport
	}
	if opts.Bind != "" && job.Bind == "" {
		job.Bind = opts.Bind
	}
	if opts.LogFormat != "" && job.LogFormat == "" {
		job.LogFormat = opts.LogFormat
	}
	if opts.RDMAProvider != "" && job.RDMAProvider == "" {
		job.RDMAProvider = opts.RDMAProvider
	}
	if job.Transport == "" {
		job.Transport = "auto"
	}
	m, err := jobMesh(job, opts)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	log, err := obs.NewLogger(job.LogFormat, job.Rank, opts.Stderr)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if job.Token == "" {
		if job.Source == "strand" {
			return nil, fmt.Errorf("worker: %s is not set", jobenv.Token)
		}
		job.Token = job.JobID
		log.Warn("no " + jobenv.Token + " in the environment: using the job id as the token; set a secret one for shared clusters")
	}

	rt := &Runtime{Mesh: m, Job: job, Metrics: obs.NewRegistry(), metrics: map[string]float64{}, launcherReports: opts.LauncherReports}
	rt.ctx, rt.cancel = context.WithCancelCause(context.Background())
	ok = false
	defer func() {
		if !ok {
			rt.close()
		}
	}()

	adv, err := advertise(ctx, job, opts.ConnectTimeout)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if job.HostCoordinator {
		_, port, err := net.SplitHostPort(job.Coordinator)
		if err != nil {
			return nil, fmt.Errorf("worker: coordinator address %q: %w", job.Coordinator, err)
		}
		// The coordinator's lines name ranks themselves: no rank field.
		coordLog, err := obs.NewLogger(job.LogFormat, -1, opts.Stderr)
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		rt.hosted, err = coordinator.Start(coordinator.Config{
			Addr: net.JoinHostPort("0.0.0.0", port), Mesh: m, Token: job.Token, JobID: job.JobID, Epoch: job.Epoch,
			JoinTimeout: opts.JoinTimeout, Gossip: withAdvertise(opts.Gossip, adv), Log: coordLog.Named("coordinator"),
			CertFile: job.TLSCert, KeyFile: job.TLSKey,
		})
		if err != nil {
			return nil, fmt.Errorf("worker: host the coordinator: %w", err)
		}
	}
	ca := job.TLSCA
	if ca == "" && job.HostCoordinator {
		ca = job.TLSCert // self-signed: the hosting rank trusts its own certificate
	}
	rt.client, err = coordinator.Dial(coordinator.ClientConfig{Addr: job.Coordinator, Token: job.Token, CAFile: ca,
		ConnectTimeout: opts.ConnectTimeout, Epoch: job.Epoch, Bound: true})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	caps := []string{"tcp"}
	if rdma.Available(job.RDMAProvider) == nil {
		caps = append(caps, "rdma")
	}
	host := coordinator.Hostname()
	log.Info("joining", zap.String("coordinator", job.Coordinator), zap.String("source", job.Source), zap.Int("world", m.World()), zap.Int64("epoch", job.Epoch))
	rep, err := rt.client.Join(ctx, &pb.JoinRequest{
		Host: host, Addrs: []string{adv}, LocalRank: int32(job.LocalRank), NodeRank: int32(job.NodeRank),
		WantRank: int32(job.Rank), Capabilities: caps, Pid: int64(os.Getpid()),
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if rep.Epoch != job.Epoch {
		return nil, fmt.Errorf("worker: coordinator serves epoch %d, this worker was started for epoch %d", rep.Epoch, job.Epoch)
	}
	rt.Rank = int(rep.Rank)
	rt.Members = rep.Members
	rt.hostID = opts.Getenv(hostIDEnv)
	if got, err := coordinator.MeshFromPB(rep.Mesh); err != nil || got != m {
		return nil, fmt.Errorf("worker: coordinator's mesh %v differs from ours %v (%v)", rep.Mesh, m, err)
	}
	if rt.Rank < 0 || rt.Rank >= m.World() {
		return nil, fmt.Errorf("worker: coordinator assigned rank %d outside world of %d", rt.Rank, m.World())
	}
	rt.Coord = m.Coord(rt.Rank)
	rt.Log = log
	if job.Rank < 0 {
		rt.Log = log.With(zap.Int("rank", rt.Rank))
	}

	// Failure detection: gossip with the coordinator, and watch it.
	// memberlist's complaints go to this rank's log, rate-limited per peer
	// (coordinator.GossipConfig.Log), and are dropped once the rank leaves.
	gcfg := opts.Gossip
	if gcfg.Log == nil {
		gcfg.Log = zap.New(&untilLeaving{Core: rt.Log.Core(), rt: rt})
	}
	rt.gossip, err = coordinator.StartGossip(coordinator.GossipName(rt.Rank), adv, job.Token, gcfg, coordinatorLoss{rt})
	if err != nil {
		return nil, fmt.Errorf("worker rank %d: %w", rt.Rank, err)
	}
	if _, err := rt.gossip.Join([]string{rep.GossipSeed}); err != nil {
		return nil, fmt.Errorf("worker rank %d: join gossip at %s: %w", rt.Rank, rep.GossipSeed, err)
	}
	if err := rt.startWatch(); err != nil {
		return nil, err
	}

	// One world transport, one communicator per group.
	dialCtx, stop := mergeCancel(ctx, rt.ctx)
	defer stop()
	t, err := rt.dialTransport(dialCtx, job, adv, log)
	if err != nil {
		return nil, rt.Explain(fmt.Errorf("worker rank %d: %w", rt.Rank, err))
	}
	// The watch goroutine may already be failing the job: publish the
	// transport under the lock it reads it with.
	ct, err := countTraffic(t, m, rt.Rank, rt.Metrics)
	if err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("worker rank %d: transport metrics: %w", rt.Rank, err)
	}
	rt.mu.Lock()
	rt.Transport = ct
	rt.mu.Unlock()
	if rt.ctx.Err() != nil {
		return nil, rt.Explain(fmt.Errorf("worker rank %d: job failed while connecting", rt.Rank))
	}
	rt.Flight = collective.NewFlightRecorder(256)
	copts := func(name string) collective.Options {
		return collective.Options{Name: name, Timeout: opts.CollectiveTimeout, Flight: rt.Flight}
	}
	world := make([]int, m.World())
	for i := range world {
		world[i] = i
	}
	groups := []struct {
		dst   **collective.Comm
		name  string
		ranks []int
	}{
		{&rt.World, "world", world},
		{&rt.DP, "dp", m.Group(mesh.DataAxis, rt.Rank)},
		{&rt.TP, "tp", m.Group(mesh.TensorAxis, rt.Rank)},
		{&rt.PP, "pp", m.Group(mesh.PipelineAxis, rt.Rank)},
	}
	for _, g := range groups {
		o := copts(g.name)
		o.Nodes = rt.nodeLabels(g.ranks) // hierarchical all-reduce when g spans hosts
		c, err := collective.New(rt.Transport, g.ranks, o)
		if err != nil {
			return nil, fmt.Errorf("worker rank %d: %s communicator over %v: %w", rt.Rank, g.name, g.ranks, err)
		}
		if nodes := c.Nodes(); nodes != nil {
			log.Info("hierarchical all-reduce", zap.String("group", g.name), zap.String("nodes", fmt.Sprint(nodes)))
		}
		*g.dst = c
	}
	if opts.MetricsAddr == "" && opts.MetricsPortBase > 0 {
		opts.MetricsAddr = net.JoinHostPort(adv, strconv.Itoa(opts.MetricsPortBase+job.LocalRank))
	}
	if opts.MetricsAddr != "" {
		a, err := obs.Serve(rt.ctx, opts.MetricsAddr, rt.Metrics)
		if err != nil {
			return nil, fmt.Errorf("worker rank %d: %w", rt.Rank, err)
		}
		rt.Log.Info("metrics", zap.String("addr", "http://"+a.String()+"/metrics"))
	}
	rt.bg.Add(1)
	go rt.heartbeat(opts.HeartbeatInterval)
	rt.Log.Info("joined", zap.Stringer("mesh", m), zap.Stringer("coord", rt.Coord), zap.String("transport", rt.TransportName))
	ok = true
	return rt, nil
}

func jobMesh(job jobenv.Job, opts Options) (mesh.Mesh, error) {
	if job.DP > 0 {
		m := mesh.Mesh{DP: job.DP, TP: job.TP, PP: job.PP}
		if m.World() != job.World {
			return mesh.Mesh{}, fmt.Errorf("mesh %v from the environment has %d ranks, world size is %d", m, m.World(), job.World)
		}
		return m, nil
	}
	return mesh.ForWorld(job.World, opts.DP, opts.TP, opts.PP)
}

func withAdvertise(g coordinator.GossipConfig, ip string) coordinator.GossipConfig {
	g.Advertise = ip
	return g
}

// advertise finds the IP this worker is reached at: the host of an explicit
// bind address, else the local address that routes to the coordinator
// (retried while the coordinator's name does not resolve yet, as happens
// while a Kubernetes headless Service is being populated).
func advertise(ctx context.Context, job jobenv.Job, timeout time.Duration) (string, error) {
	if job.Bind != "" {
		addr, err := tcp.ResolveBind(job.Bind)
		if err != nil {
			return "", err
		}
		host, _, err := net.SplitHostPort(addr)
		if err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
			return host, nil
		}
	}
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	backoff := 100 * time.Millisecond
	for {
		ip, err := jobenv.AdvertiseIP(job.Coordinator)
		if err == nil {
			return ip, nil
		}
		if time.Now().Add(backoff).After(deadline) {
			return "", fmt.Errorf("coordinator %s: %w", job.Coordinator, err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return "", fmt.Errorf("coordinator %s: %w", job.Coordinator, ctx.Err())
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// transportLog routes the transport's slog lines into the zap log, and
// drops them once this rank is leaving: peers closing their sockets at the
// end of a job are not failures.
type transportLog struct {
	rt  *Runtime
	log *zap.Logger
}

func (w transportLog) Write(p []byte) (int, error) {
	w.rt.mu.Lock()
	leaving := w.rt.leaving
	w.rt.mu.Unlock()
	// After a job failure we close the transport ourselves: its
	// complaints about that add nothing to the reason already logged.
	if !leaving && w.rt.ctx.Err() == nil {
		w.log.Warn("transport: " + string(trimNL(p)))
	}
	return len(p), nil
}

// untilLeaving is a log core that drops every line once the rank is
// leaving or the job has failed: memberlist's complaints about peers that
// shut down at the end of a job (or after its failure, already reported)
// are not news.
type untilLeaving struct {
	zapcore.Core
	rt *Runtime
}

func (u *untilLeaving) quiet() bool {
	u.rt.mu.Lock()
	leaving := u.rt.leaving
	u.rt.mu.Unlock()
	return leaving || u.rt.ctx.Err() != nil
}

func (u *untilLeaving) With(f []zapcore.Field) zapcore.Core {
	return &untilLeaving{Core: u.Core.With(f), rt: u.rt}
}

func (u *untilLeaving) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if u.quiet() || !u.Enabled(e.Level) {
		return ce
	}
	return ce.AddCore(e, u)
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}

// coordinatorLoss fails the runtime when memberlist declares the
// coordinator's node dead: with the coordinator gone (its host crashed or
// the network split) nobody is left to tell this rank what happened, and
// its collectives would otherwise wait for their deadline. This is the one
// membership fact a worker acts on by itself.
type coordinatorLoss struct{ rt *Runtime }

func (c coordinatorLoss) NotifyJoin(*memberlist.Node)   {}
func (c coordinatorLoss) NotifyUpdate(*memberlist.Node) {}
func (c coordinatorLoss) NotifyLeave(n *memberlist.Node) {
	if n.Name != "coordinator" {
		return
	}
	c.rt.mu.Lock()
	leaving := c.rt.leaving
	c.rt.mu.Unlock()
	if leaving {
		return
	}
	// Second opinion over TCP before giving up on the job: a coordinator
	// that is only slow to answer UDP probes still answers a heartbeat.
	go func() {
		ctx, cancel := context.WithTimeout(c.rt.ctx, 2*time.Second)
		defer cancel()
		if _, err := c.rt.client.RPC.Heartbeat(ctx, &pb.HeartbeatRequest{Rank: int32(c.rt.Rank), Step: -1}); err == nil {
			c.rt.Log.Warn("memberlist lost the coordinator, but it still answers; carrying on")
			return
		}
		c.rt.fail(fmt.Errorf("lost the coordinator: memberlist stopped hearing from it at %s and it does not answer (its host died or the network split)", n.Address()))
	}()
}

// startWatch opens the coordinator's event stream and cancels Context()
// with the reason when the job fails or the coordinator is lost.
func (rt *Runtime) startWatch() error {
	wctx, stop := context.WithCancel(context.Background())
	rt.stopWatch = stop
	stream, err := rt.client.RPC.Watch(wctx, &pb.WatchRequest{Rank: int32(rt.Rank)})
	if err == nil {
		_, err = stream.Recv() // KIND_RUNNING: the stream is registered
	}
	if err != nil {
		stop()
		return fmt.Errorf("worker rank %d: watch coordinator: %w", rt.Rank, err)
	}
	rt.bg.Add(1)
	go func() {
		defer rt.bg.Done()
		ev, err := stream.Recv()
		rt.mu.Lock()
		leaving := rt.leaving
		rt.mu.Unlock()
		switch {
		case err == nil && ev.Kind == pb.Event_KIND_RANK_DEAD:
			rt.fail(&RankDeadError{Rank: int(ev.Rank), Reason: ev.Reason})
		case err == nil:
			rt.fail(&RankDeadError{Rank: -1, Reason: ev.Reason})
		case leaving || wctx.Err() != nil:
		default:
			rt.fail(fmt.Errorf("lost the coordinator at %s: %v", rt.client.Addr(), err))
		}
	}()
	return nil
}

// fail cancels the runtime and closes the transport so that blocked
// collectives return now.
// FlightKey is the coordinator store key under which a failing rank
// publishes its flight record (JSON list of collective.FlightEntry).
func FlightKey(rank int) string { return fmt.Sprintf("flight/%d", rank) }

// publishFlight sends this rank's flight record to the coordinator, bounded
// to a second: diagnosis must never hold up an exit.
func (rt *Runtime) publishFlight(ctx context.Context) {
	if rt.client == nil || rt.Flight == nil {
		return
	}
	raw, err := json.Marshal(rt.Flight.Entries())
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = rt.client.Store().Set(ctx, FlightKey(rt.Rank), raw)
}

func (rt *Runtime) fail(cause error) {
	if rt.ctx.Err() != nil {
		return
	}
	rt.cancel(cause)
	var notice *RankDeadError
	switch {
	case rt.Log == nil:
	case errors.As(cause, &notice) && rt.LauncherReports():
		// strand's local launcher prints the job's failure once, with
		// the coordinator's reason: every rank repeating it is noise.
		rt.Log.Debug("stopping: " + cause.Error())
	default:
		rt.Log.Error("stopping: " + cause.Error())
	}
	rt.mu.Lock()
	t := rt.Transport
	rt.mu.Unlock()
	if t != nil {
		_ = t.Close()
	}
}

// LauncherReports says whether the launching process reports the job's
// failure (Options.LauncherReports).
func (rt *Runtime) LauncherReports() bool { return rt.launcherReports }

func (rt *Runtime) heartbeat(every time.Duration) {
	defer rt.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-rt.ctx.Done():
			return
		case <-t.C:
		}
		rt.mu.Lock()
		req := &pb.HeartbeatRequest{Rank: int32(rt.Rank), Step: rt.step, Metrics: make(map[string]float64, len(rt.metrics))}
		for k, v := range rt.metrics {
			req.Metrics[k] = v
		}
		leaving := rt.leaving
		rt.mu.Unlock()
		if leaving {
			return
		}
		req.InFlight, req.Entered = rt.inFlightView()
		hctx, cancel := context.WithTimeout(rt.ctx, 5*time.Second)
		rep, err := rt.client.RPC.Heartbeat(hctx, req)
		cancel()
		if err == nil && rep.State == pb.JobState_JOB_STATE_FAILED {
			rt.fail(&RankDeadError{Rank: int(rep.DeadRank), Reason: rep.Reason})
		}
	}
}

// Context is cancelled when the job fails (a rank died, failed or the job
// was aborted); context.Cause names the rank. Pass it to collectives.
func (rt *Runtime) Context() context.Context { return rt.ctx }

// Explain returns err annotated with the job failure that caused it, if
// the job has failed; otherwise err unchanged.
func (rt *Runtime) Explain(err error) error {
	if err == nil || rt.ctx.Err() == nil {
		return err
	}
	cause := context.Cause(rt.ctx)
	return fmt.Errorf("%w (after: %v)", cause, err)
}

// Report records progress: the step and metrics such as "loss",
// "step_time_s", "tokens_per_s". They reach the coordinator with the next
// heartbeat and appear on this worker's /metrics.
func (rt *Runtime) Report(step int, m map[string]float64) {
	rt.mu.Lock()
	rt.step = int64(step)
	for k, v := range m {
		rt.metrics[k] = v
	}
	rt.mu.Unlock()
	rank := obs.Labels{"rank": strconv.Itoa(rt.Rank)}
	if err := rt.Metrics.Set("strand_step", "last reported training step", rank, float64(step)); err != nil {
		rt.Log.Warn("metrics", zap.Error(err))
	}
	for k, v := range m {
		if err := rt.Metrics.Set("strand_"+k, "reported by the training loop", rank, v); err != nil {
			rt.Log.Warn("metrics", zap.Error(err))
		}
	}
}

// Barrier waits on the coordinator until every rank arrives (a control-plane
// barrier, independent of the transport).
func (rt *Runtime) Barrier(ctx context.Context) error {
	rt.mu.Lock()
	rt.barrier++
	name := "b" + strconv.Itoa(rt.barrier)
	rt.mu.Unlock()
	ctx, stop := mergeCancel(ctx, rt.ctx)
	defer stop()
	return rt.Explain(rt.client.Barrier(ctx, name, rt.Rank))
}

// Leave reports how this rank ended (err nil: success) and releases the
// communicators, transport and gossip. On success it first waits at a
// barrier so no rank closes its sockets while peers still use them. The
// rank hosting the coordinator then waits (within ctx) until every rank
// has left. It returns err, explained when the job failed.
func (rt *Runtime) Leave(ctx context.Context, err error) error {
	if err != nil && rt.ctx.Err() == nil && rt.operatorStopped() {
		// The operator stopped this rank mid-collective: that is the
		// job's reason, and no rank is to blame. Say so to the
		// coordinator first (its Abort wakes every rank's watch at once),
		// then leave without waiting for a verdict.
		rt.abortInterrupted(ctx)
	}
	if err != nil && rt.ctx.Err() == nil {
		// A collective usually fails because a peer died, and the
		// transport may notice before the coordinator does. Give the
		// coordinator a moment to name the culprit, so the job's reason
		// is "rank 3 died", not "rank 1 failed". The wait ends as soon
		// as the verdict arrives (another rank's abort included).
		t := time.NewTimer(verdictWait)
		select {
		case <-rt.ctx.Done():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	err = rt.Explain(err)
	if err == nil && rt.ctx.Err() != nil {
		err = context.Cause(rt.ctx)
	}
	if err != nil {
		rt.publishFlight(ctx)
	}
	// The program's last collective is done: from here on peers close
	// their sockets, which is expected, not a failure.
	rt.mu.Lock()
	rt.leaving = true
	rt.mu.Unlock()
	if err == nil {
		if berr := rt.Barrier(ctx); berr != nil {
			err = fmt.Errorf("leave barrier: %w", berr)
		}
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	// Bounded: the coordinator may be the thing that is gone.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, lerr := rt.client.RPC.Leave(lctx, &pb.LeaveRequest{Rank: int32(rt.Rank), Error: msg})
	cancel()
	if lerr != nil && err == nil {
		err = fmt.Errorf("leave: %w", lerr)
	}
	if rt.hosted != nil {
		select {
		case <-rt.hosted.Finished():
		case <-ctx.Done():
		}
	}
	rt.close()
	return err
}

// abortInterrupted fails the job as interrupted by the operator: at the
// coordinator (bounded to a second: it may be gone too) and here, so the
// error this rank leaves with gives that reason whatever the coordinator
// answered.
func (rt *Runtime) abortInterrupted(ctx context.Context) {
	actx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := rt.client.RPC.Abort(actx, &pb.AbortRequest{Rank: -1, Reason: InterruptedReason})
	cancel()
	if err != nil && rt.Log != nil {
		rt.Log.Debug("telling the coordinator of the operator's stop", zap.Error(err))
	}
	rt.fail(&RankDeadError{Rank: -1, Reason: InterruptedReason})
}

// close releases everything Join built, in reverse order.
func (rt *Runtime) close() {
	for _, c := range []*collective.Comm{rt.PP, rt.TP, rt.DP, rt.World} {
		if c != nil {
			_ = c.Close()
		}
	}
	if rt.Transport != nil {
		_ = rt.Transport.Close()
	}
	if rt.stopWatch != nil {
		rt.mu.Lock()
		rt.leaving = true
		rt.mu.Unlock()
		rt.stopWatch()
	}
	rt.cancel(errors.New("worker left the job"))
	rt.bg.Wait()
	if rt.gossip != nil {
		_ = rt.gossip.Leave(500 * time.Millisecond)
		_ = rt.gossip.Shutdown()
	}
	if rt.client != nil {
		_ = rt.client.Close()
	}
	if rt.hosted != nil {
		_ = rt.hosted.Close()
	}
}

// mergeCancel returns a context that ends when either a or b ends, with
// a's values and deadline.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(a)
	stop := context.AfterFunc(b, func() { cancel(context.Cause(b)) })
	return ctx, func() { stop(); cancel(nil) }
}
