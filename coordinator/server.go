package coordinator

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/internal/ratelog"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/obs"
)

// Config describes the job a coordinator serves.
type Config struct {
	// Addr is the listen address, "host:port"; port 0 picks a free one.
	Addr string
	// Mesh is the job's layout; the coordinator waits for Mesh.World() ranks.
	Mesh mesh.Mesh
	// Token is the job secret every RPC and every gossip message must carry.
	Token string
	// JobID names the job in logs and status; default "job".
	JobID string
	// Epoch is the job incarnation this coordinator serves (0 for the first
	// launch, +1 per elastic restart); calls from clients of another epoch
	// are refused (see epoch.go).
	Epoch int64
	// Regroup makes this a regrouping rendezvous for launchers between two
	// epochs (see launcher.Regroup): only the key-value store is served,
	// and Join is refused as Unavailable so that a worker that is early
	// retries until the real coordinator of the epoch is up.
	Regroup bool
	// JoinTimeout bounds how long the job waits for all ranks to join,
	// counted from Start; default 2 minutes.
	JoinTimeout time.Duration
	// CertFile and KeyFile enable TLS when both are set.
	CertFile, KeyFile string
	// GossipHost is where the coordinator's memberlist node binds; default
	// the host of Addr (0.0.0.0 / empty means all interfaces).
	GossipHost string
	Gossip     GossipConfig
	// HeartbeatStale is the second opinion on a memberlist verdict: a rank
	// memberlist calls dead is failed only once its last heartbeat (sent
	// over TCP, every second by default) is at least this old, so a process
	// that is merely slow to answer UDP probes on a loaded machine is not
	// killed. Default 2.5 s; keep it above the workers' heartbeat interval.
	HeartbeatStale time.Duration
	// MetricsAddr, when set, serves Prometheus metrics at /metrics.
	MetricsAddr string
	// StallAfter is the least time a running rank's step may stay behind
	// the furthest rank's before Status calls it "stalled"; the threshold
	// is the larger of this and StallSteps recent step times. Default 5 s.
	StallAfter time.Duration
	// StallSteps is how many of the job's recent step times a rank may
	// fall behind for before it is "stalled"; default 4.
	StallSteps int
	// HandshakeTimeout bounds a new connection's hello (TLS handshake and
	// HTTP/2 preface): garbage is dropped at once, a truncated or silent
	// hello after this long; default 10 s.
	HandshakeTimeout time.Duration
	// Log receives the coordinator's log (default: none). Complaints
	// about peers (wrong token, garbage hellos, bad gossip packets) go to
	// it at warn level with the peer's address, at most one line per peer
	// host and kind every ratelog.DefaultEvery.
	Log *zap.Logger
}

// Server is a running coordinator.
type Server struct {
	cfg    Config
	log    *zap.Logger
	rej    *ratelog.Limiter // complaints about peers, rate-limited
	grpc   *grpc.Server
	ln     net.Listener
	gossip *memberlist.Memberlist
	// gossipSeed is gossip's own address, read once at start: memberlist
	// calls our event handlers (which take mu) while holding its own lock,
	// so nothing may call into memberlist while holding mu.
	gossipSeed  string
	metrics     *obs.Registry
	metricsAddr net.Addr
	start       time.Time
	cancel      context.CancelFunc

	mu       sync.Mutex
	state    pb.JobState
	reason   string
	deadRank int
	joiners  []*joiner // while waiting: in arrival order; once running: by rank
	order    int
	running  chan struct{} // closed when every rank has joined and has a rank
	failed   chan struct{} // closed when the job fails
	finished chan struct{} // closed when the job is done or failed
	kv       map[string][]byte
	kvChange chan struct{} // closed and replaced on every Set
	barriers map[string]*barrier
	gossipUp map[int]bool // rank -> memberlist currently considers it alive
	// furthest is the highest step any rank reported, first reached at
	// progressAt: the job-wide step watchdog's clock.
	furthest   int64
	progressAt time.Time
	stallSeen  string // the stall the watchdog last warned about: its ranks and steps

	pb.UnimplementedCoordinatorServer
}

type joiner struct {
	req      *pb.JoinRequest
	j        Joiner
	rank     int
	state    string // "joined", "running", "left", "failed", "dead"
	err      string
	step     int64
	lastSeen time.Time
	metrics  map[string]float64
	// stepAt is when step last changed; stepEvery is a moving average of
	// the time between changes (the rank's recent step time).
	stepAt    time.Time
	stepEvery time.Duration
	// inFlight and entered: the rank's oldest unfinished call and newest
	// sequence number per communicator, from its last progress heartbeat
	// (waits.go).
	inFlight *pb.InFlight
	entered  map[string]uint64
}

type barrier struct {
	arrived map[int]bool
	done    chan struct{}
}

// Start listens on cfg.Addr, starts the gRPC service and the gossip node,
// and returns once both accept connections. Close stops them.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Mesh.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	if cfg.Token == "" {
		return nil, errors.New("coordinator: a job token is required")
	}
	if cfg.JobID == "" {
		cfg.JobID = "job"
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.HeartbeatStale <= 0 {
		cfg.HeartbeatStale = 2500 * time.Millisecond
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = 5 * time.Second
	}
	if cfg.StallSteps <= 0 {
		cfg.StallSteps = 4
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("coordinator listen %s: %w", cfg.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := cfg.Log.With(zap.String("job", cfg.JobID))
	rej := ratelog.New(log, 0)
	tlsOn := cfg.CertFile != "" || cfg.KeyFile != ""
	ln = &helloListener{Listener: ln, want: helloPrefix(tlsOn), rej: rej}
	s := &Server{
		cfg: cfg, log: log, rej: rej, ln: ln, start: time.Now(), cancel: cancel,
		metrics: obs.NewRegistry(), state: pb.JobState_JOB_STATE_WAITING, deadRank: -1,
		running: make(chan struct{}), failed: make(chan struct{}), finished: make(chan struct{}),
		kv: make(map[string][]byte), kvChange: make(chan struct{}), barriers: make(map[string]*barrier), gossipUp: make(map[int]bool),
	}
	opts := []grpc.ServerOption{
		// Allow the clients' keepalive pings (see Dial).
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 2 * time.Second, PermitWithoutStream: true}),
		grpc.UnaryInterceptor(s.authUnary),
		grpc.StreamInterceptor(s.authStream),
		grpc.ConnectionTimeout(cfg.HandshakeTimeout),
	}
	if tlsOn {
		creds, err := credentials.NewServerTLSFromFile(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			cancel()
			ln.Close()
			return nil, fmt.Errorf("coordinator TLS: %w", err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterCoordinatorServer(s.grpc, s)

	gossipHost := cfg.GossipHost
	if gossipHost == "" {
		gossipHost, _, _ = net.SplitHostPort(ln.Addr().String())
	}
	gcfg := cfg.Gossip
	if gcfg.Log == nil {
		gcfg.Log = log
	}
	s.gossip, err = StartGossip("coordinator", gossipHost, cfg.Token, gcfg, gossipEvents{s})
	if err != nil {
		cancel()
		ln.Close()
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	s.gossipSeed = gossipAddr(s.gossip)
	if cfg.MetricsAddr != "" {
		s.metricsAddr, err = obs.Serve(ctx, cfg.MetricsAddr, s.metrics)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("coordinator: %w", err)
		}
	}
	go func() { _ = s.grpc.Serve(ln) }()
	if !cfg.Regroup {
		go s.joinTimer(ctx)
		go s.stepWatchdog(ctx)
	}
	s.log.Info("coordinator listening", zap.String("addr", s.Addr()), zap.Int64("epoch", cfg.Epoch), zap.String("gossip", s.gossipSeed),
		zap.Stringer("mesh", cfg.Mesh), zap.Int("world", cfg.Mesh.World()))
	return s, nil
}

// Addr is the address the gRPC service listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// MetricsAddr is the /metrics listener's address, or "" when disabled.
func (s *Server) MetricsAddr() string {
	if s.metricsAddr == nil {
		return ""
	}
	return s.metricsAddr.String()
}

// Finished is closed when the job is done (every rank left cleanly) or failed.
func (s *Server) Finished() <-chan struct{} { return s.finished }

// Result returns the job state and, for a failed job, the reason and the
// rank that died or failed first (-1 when none did, e.g. an abort).
func (s *Server) Result() (state pb.JobState, reason string, deadRank int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.reason, s.deadRank
}

// Fail fails the job with reason, as Abort does.
func (s *Server) Fail(reason string) { s.fail(-1, reason) }

// Close stops the service and the gossip node. Open streams end.
func (s *Server) Close() error {
	s.cancel()
	s.grpc.Stop()
	if s.gossip != nil {
		_ = s.gossip.Shutdown()
	}
	return nil
}

func (s *Server) joinTimer(ctx context.Context) {
	t := time.NewTimer(s.cfg.JoinTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.running:
	case <-s.failed:
	case <-t.C:
		s.mu.Lock()
		msg := s.missingLocked()
		s.mu.Unlock()
		s.fail(-1, fmt.Sprintf("join timeout after %v: %s", s.cfg.JoinTimeout, msg))
	}
}

// missingLocked describes who joined and who is missing while waiting.
func (s *Server) missingLocked() string {
	world := s.cfg.Mesh.World()
	var who []string
	asked := map[int]bool{}
	for _, j := range s.joiners {
		who = append(who, fmt.Sprintf("%s/local%d(pid %d)", j.req.Host, j.req.LocalRank, j.req.Pid))
		if j.req.WantRank >= 0 {
			asked[int(j.req.WantRank)] = true
		}
	}
	msg := fmt.Sprintf("%d of %d ranks joined", len(s.joiners), world)
	if len(who) > 0 {
		msg += " [" + strings.Join(who, " ") + "]"
	}
	if len(asked) == len(s.joiners) && len(asked) > 0 {
		var miss []string
		for r := 0; r < world; r++ {
			if !asked[r] {
				miss = append(miss, strconv.Itoa(r))
			}
		}
		msg += "; missing ranks " + strings.Join(miss, ",")
	} else {
		msg += fmt.Sprintf("; %d worker(s) never joined", world-len(s.joiners))
	}
	return msg
}

// fail moves the job to failed (once) and wakes every waiter and watcher.
func (s *Server) fail(rank int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(rank, reason)
}

func (s *Server) failLocked(rank int, reason string) {
	if s.state == pb.JobState_JOB_STATE_FAILED || s.state == pb.JobState_JOB_STATE_DONE {
		return
	}
	s.state = pb.JobState_JOB_STATE_FAILED
	s.reason = reason
	s.deadRank = rank
	close(s.failed)
	close(s.finished)
	if err := s.metrics.Set("strand_job_failed", "1 once the job has failed", nil, 1); err != nil {
		s.log.Warn("metrics", zap.Error(err))
	}
	s.log.Error("job failed", zap.Int("dead_rank", rank), zap.String("reason", reason))
}

// rankDied records that rank is gone without a clean Leave and fails the job.
func (s *Server) rankDied(rank int, how string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == pb.JobState_JOB_STATE_WAITING || rank < 0 || rank >= len(s.joiners) {
		return
	}
	j := s.joiners[rank]
	if j.state == "left" || j.state == "failed" || j.state == "dead" {
		return
	}
	j.state = "dead"
	if s.state == pb.JobState_JOB_STATE_RUNNING {
		// where everyone stood: which ranks waited on the dead one
		for _, w := range s.waitsLocked(time.Now()) {
			s.log.Warn("at rank " + strconv.Itoa(rank) + "'s death: " + w)
		}
	}
	s.failLocked(rank, fmt.Sprintf("rank %d (host %s, pid %d) died: %s", rank, j.req.Host, j.req.Pid, how))
}

// ---- authentication ----

func (s *Server) checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	want := "Bearer " + s.cfg.Token
	for _, v := range md.Get("authorization") {
		if subtle.ConstantTimeCompare([]byte(v), []byte(want)) == 1 {
			return nil
		}
	}
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	method, _ := grpc.Method(ctx)
	s.rej.Warn(from, "coordinator: refused a call with a missing or wrong job token", zap.String("method", method))
	return status.Error(codes.Unauthenticated, "missing or wrong job token")
}

func (s *Server) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.checkToken(ctx); err != nil {
		return nil, err
	}
	if err := s.checkEpoch(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.checkToken(ss.Context()); err != nil {
		return err
	}
	if err := s.checkEpoch(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// ---- RPCs ----

// Join implements pb.CoordinatorServer.
func (s *Server) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinReply, error) {
	world := s.cfg.Mesh.World()
	if s.cfg.Regroup {
		return nil, status.Errorf(codes.Unavailable, "coordinator of epoch %d is still regrouping the nodes; retry", s.cfg.Epoch)
	}
	s.mu.Lock()
	switch s.state {
	case pb.JobState_JOB_STATE_WAITING:
	case pb.JobState_JOB_STATE_FAILED:
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "job failed: %s", s.reason)
	default:
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "job already %s with %d ranks; %s (local rank %d) cannot join", jobStateName(s.state), world, req.Host, req.LocalRank)
	}
	if req.WantRank >= int32(world) {
		s.mu.Unlock()
		return nil, status.Errorf(codes.InvalidArgument, "rank %d asked for, but the world has %d ranks (mesh %v)", req.WantRank, world, s.cfg.Mesh)
	}
	me := &joiner{req: req, state: "joined", lastSeen: time.Now(), j: Joiner{
		Host: req.Host, NodeRank: int(req.NodeRank), LocalRank: int(req.LocalRank), WantRank: int(req.WantRank), Order: s.order,
	}}
	if req.WantRank < 0 {
		me.j.WantRank = -1
	}
	s.order++
	s.joiners = append(s.joiners, me)
	s.log.Info("worker joined", zap.String("host", req.Host), zap.Int32("local_rank", req.LocalRank),
		zap.Int32("want_rank", req.WantRank), zap.Int64("pid", req.Pid), zap.Int("joined", len(s.joiners)), zap.Int("world", world))
	if len(s.joiners) == world {
		s.assignLocked()
	}
	running, failed := s.running, s.failed
	s.mu.Unlock()

	select {
	case <-running:
	case <-failed:
		_, reason, _ := s.Result()
		return nil, status.Errorf(codes.Aborted, "job failed before it started: %s", reason)
	case <-ctx.Done():
		s.mu.Lock()
		if s.state == pb.JobState_JOB_STATE_WAITING {
			for i, j := range s.joiners {
				if j == me {
					s.joiners = append(s.joiners[:i], s.joiners[i+1:]...)
					break
				}
			}
		}
		s.mu.Unlock()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &pb.JoinReply{
		Rank:       int32(me.rank),
		Mesh:       meshToPB(s.cfg.Mesh),
		JobId:      s.cfg.JobID,
		Epoch:      s.cfg.Epoch,
		Members:    s.membersLocked(),
		GossipSeed: s.gossipSeed,
	}, nil
}

// assignLocked gives every joiner its rank once the world is complete.
func (s *Server) assignLocked() {
	js := make([]Joiner, len(s.joiners))
	for i, j := range s.joiners {
		js[i] = j.j
	}
	ranks, err := Assign(js)
	if err != nil {
		s.failLocked(-1, err.Error())
		return
	}
	byRank := make([]*joiner, len(s.joiners))
	hosts := make([]string, len(s.joiners))
	for i, j := range s.joiners {
		j.rank = ranks[i]
		byRank[j.rank] = j
		hosts[j.rank] = j.req.Host
	}
	s.joiners = byRank
	if bad := SpreadTP(s.cfg.Mesh, hosts); len(bad) > 0 {
		s.log.Warn("tensor-parallel groups span nodes; TP traffic will cross the network", zap.Any("groups", bad))
	}
	s.state = pb.JobState_JOB_STATE_RUNNING
	close(s.running)
	if err := s.metrics.Set("strand_world_size", "ranks in the job", nil, float64(len(byRank))); err != nil {
		s.log.Warn("metrics", zap.Error(err))
	}
	s.log.Info("all ranks joined; job running", zap.Stringer("mesh", s.cfg.Mesh))
}

func (s *Server) membersLocked() []*pb.Member {
	out := make([]*pb.Member, len(s.joiners))
	for r, j := range s.joiners {
		out[r] = &pb.Member{
			Rank: int32(r), Host: j.req.Host, Addrs: j.req.Addrs, LocalRank: j.req.LocalRank,
			NodeRank: j.req.NodeRank, Pid: j.req.Pid, GossipAddr: j.req.GossipAddr, Capabilities: j.req.Capabilities,
		}
	}
	return out
}

// Values returns every stored key with the given prefix and its value (for
// the launcher's diagnosis of a failed job).
func (s *Server) Values(prefix string) map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.kv {
		if strings.HasPrefix(k, prefix) {
			out[k] = append([]byte(nil), v...)
		}
	}
	return out
}

// Set implements pb.CoordinatorServer.
func (s *Server) Set(_ context.Context, req *pb.SetRequest) (*pb.SetReply, error) {
	if req.Key == "" {
		return nil, status.Error(codes.InvalidArgument, "empty key")
	}
	s.mu.Lock()
	s.kv[req.Key] = append([]byte(nil), req.Value...)
	close(s.kvChange)
	s.kvChange = make(chan struct{})
	s.mu.Unlock()
	return &pb.SetReply{}, nil
}

// Get implements pb.CoordinatorServer.
func (s *Server) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetReply, error) {
	if req.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	for {
		s.mu.Lock()
		v, ok := s.kv[req.Key]
		changed := s.kvChange
		s.mu.Unlock()
		if ok {
			return &pb.GetReply{Found: true, Value: v}, nil
		}
		if !req.Wait {
			return &pb.GetReply{Found: false}, nil
		}
		select {
		case <-changed:
		case <-s.failed:
			_, reason, _ := s.Result()
			return nil, status.Errorf(codes.Aborted, "get %q: job failed: %s", req.Key, reason)
		case <-ctx.Done():
			return nil, status.Errorf(codes.DeadlineExceeded, "get %q: key not set before the deadline", req.Key)
		}
	}
}

// Barrier implements pb.CoordinatorServer. Names must be unique per
// barrier episode; the worker runtime numbers them.
func (s *Server) Barrier(ctx context.Context, req *pb.BarrierRequest) (*pb.BarrierReply, error) {
	world := s.cfg.Mesh.World()
	if req.Rank < 0 || int(req.Rank) >= world {
		return nil, status.Errorf(codes.InvalidArgument, "barrier %q: rank %d outside world of %d", req.Name, req.Rank, world)
	}
	if req.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	s.mu.Lock()
	b, ok := s.barriers[req.Name]
	if !ok {
		b = &barrier{arrived: make(map[int]bool), done: make(chan struct{})}
		s.barriers[req.Name] = b
	}
	if !b.arrived[int(req.Rank)] {
		b.arrived[int(req.Rank)] = true
		if len(b.arrived) == world {
			close(b.done)
		}
	}
	s.mu.Unlock()
	select {
	case <-b.done:
		return &pb.BarrierReply{}, nil
	case <-s.failed:
		_, reason, _ := s.Result()
		return nil, status.Errorf(codes.Aborted, "barrier %q: job failed: %s", req.Name, reason)
	case <-ctx.Done():
		s.mu.Lock()
		var miss []string
		for r := 0; r < world; r++ {
			if !b.arrived[r] {
				miss = append(miss, strconv.Itoa(r))
			}
		}
		n := len(b.arrived)
		s.mu.Unlock()
		return nil, status.Errorf(codes.DeadlineExceeded, "barrier %q: %d of %d ranks arrived; missing ranks %s", req.Name, n, world, strings.Join(miss, ","))
	}
}

// Heartbeat implements pb.CoordinatorServer.
func (s *Server) Heartbeat(_ context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != pb.JobState_JOB_STATE_WAITING {
		if req.Rank < 0 || int(req.Rank) >= len(s.joiners) {
			return nil, status.Errorf(codes.InvalidArgument, "heartbeat from rank %d outside world of %d", req.Rank, len(s.joiners))
		}
		j := s.joiners[req.Rank]
		j.lastSeen = time.Now()
		if req.Step < 0 { // a liveness probe, not a progress report
			return &pb.HeartbeatReply{State: s.state, Reason: s.reason, DeadRank: int32(s.deadRank)}, nil
		}
		if now := j.lastSeen; req.Step != j.step || j.stepAt.IsZero() {
			if !j.stepAt.IsZero() && req.Step > j.step {
				d := now.Sub(j.stepAt) / time.Duration(req.Step-j.step)
				if j.stepEvery == 0 {
					j.stepEvery = d
				} else {
					j.stepEvery = (3*j.stepEvery + d) / 4
				}
			}
			j.stepAt = now
		}
		j.step = req.Step
		j.inFlight, j.entered = req.InFlight, req.Entered
		if req.Step > s.furthest || s.progressAt.IsZero() {
			s.furthest, s.progressAt = max(s.furthest, req.Step), j.lastSeen
		}
		if j.state == "joined" {
			j.state = "running"
		}
		if j.metrics == nil {
			j.metrics = make(map[string]float64)
		}
		rl := obs.Labels{"rank": strconv.Itoa(int(req.Rank))}
		if err := s.metrics.Set("strand_step", "last step a rank reported", rl, float64(req.Step)); err != nil {
			s.log.Warn("metrics", zap.Error(err))
		}
		for k, v := range req.Metrics {
			j.metrics[k] = v
			if err := s.metrics.Set("strand_"+k, "reported by workers", rl, v); err != nil {
				s.log.Warn("metrics", zap.Error(err))
			}
		}
	}
	return &pb.HeartbeatReply{State: s.state, Reason: s.reason, DeadRank: int32(s.deadRank)}, nil
}

// Watch implements pb.CoordinatorServer: it sends KIND_RUNNING, then one
// failure event when the job fails. A stream that drops while its rank is
// still running means the worker process is gone: the job fails.
func (s *Server) Watch(req *pb.WatchRequest, stream pb.Coordinator_WatchServer) error {
	s.mu.Lock()
	if s.state == pb.JobState_JOB_STATE_WAITING || req.Rank < 0 || int(req.Rank) >= len(s.joiners) {
		s.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "watch: rank %d has no place in the job (state %s)", req.Rank, jobStateName(s.state))
	}
	s.mu.Unlock()
	if err := stream.Send(&pb.Event{Kind: pb.Event_KIND_RUNNING, Rank: -1}); err != nil {
		return err
	}
	select {
	case <-s.failed:
		_, reason, dead := s.Result()
		ev := &pb.Event{Kind: pb.Event_KIND_ABORT, Rank: -1, Reason: reason}
		if dead >= 0 {
			ev = &pb.Event{Kind: pb.Event_KIND_RANK_DEAD, Rank: int32(dead), Reason: reason}
		}
		return stream.Send(ev)
	case <-stream.Context().Done():
		s.rankDied(int(req.Rank), "its connection to the coordinator dropped without a Leave (process exited or was killed)")
		return stream.Context().Err()
	}
}

// Status implements pb.CoordinatorServer.
func (s *Server) Status(context.Context, *pb.StatusRequest) (*pb.StatusReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.StatusReply{
		JobId: s.cfg.JobID, Epoch: s.cfg.Epoch, State: s.state, Reason: s.reason, Mesh: meshToPB(s.cfg.Mesh),
		World: int32(s.cfg.Mesh.World()), Joined: int32(len(s.joiners)), UptimeSeconds: time.Since(s.start).Seconds(),
	}
	if s.state == pb.JobState_JOB_STATE_WAITING {
		for _, j := range s.joiners {
			out.Ranks = append(out.Ranks, &pb.RankStatus{
				Member: &pb.Member{Rank: -1, Host: j.req.Host, LocalRank: j.req.LocalRank, NodeRank: j.req.NodeRank, Pid: j.req.Pid},
				State:  "joined", LastSeenSeconds: time.Since(j.lastSeen).Seconds(),
			})
		}
		return out, nil
	}
	members := s.membersLocked()
	health := s.healthLocked(time.Now())
	for r, j := range s.joiners {
		c := s.cfg.Mesh.Coord(r)
		m := make(map[string]float64, len(j.metrics))
		for k, v := range j.metrics {
			m[k] = v
		}
		out.Ranks = append(out.Ranks, &pb.RankStatus{
			Member: members[r], Dp: int32(c.DP), Tp: int32(c.TP), Pp: int32(c.PP), State: health[r],
			Step: j.step, LastSeenSeconds: time.Since(j.lastSeen).Seconds(), Metrics: m, Error: j.err,
		})
	}
	return out, nil
}

// healthLocked is each rank's state for Status: its own ("running",
// "left", ...) except for a running rank that looks wrong:
//
//   - "missing: last heartbeat 3.1s ago" when its heartbeats are older
//     than HeartbeatStale;
//   - "stalled: step 41 for 12s, others at 45" when its step is behind the
//     furthest rank's and has not advanced for the stall threshold (the
//     larger of StallAfter and StallSteps of the job's recent step time).
func (s *Server) healthLocked(now time.Time) []string {
	var furthest int64 = -1
	for _, j := range s.joiners {
		if j.state == "running" {
			furthest = max(furthest, j.step)
		}
	}
	threshold := s.stallThresholdLocked()
	out := make([]string, len(s.joiners))
	for r, j := range s.joiners {
		out[r] = j.state
		if j.state != "running" {
			continue
		}
		if age := now.Sub(j.lastSeen); age >= s.cfg.HeartbeatStale {
			out[r] = fmt.Sprintf("missing: last heartbeat %.1fs ago", age.Seconds())
		} else if still := now.Sub(j.stepAt); j.step < furthest && still >= threshold {
			out[r] = fmt.Sprintf("stalled: step %d for %.0fs, others at %d", j.step, still.Seconds(), furthest)
		} else if still := now.Sub(s.progressAt); j.step == furthest && furthest > 0 && still >= threshold {
			// (from the first step on: loading data and building the
			// model before it take as long as they take)
			out[r] = fmt.Sprintf("stalled: no rank past step %d for %.0fs", furthest, still.Seconds())
		}
	}
	return out
}

// stallThresholdLocked is how long a step may take before the job or a
// rank counts as stalled: the larger of StallAfter and StallSteps times
// the slowest running rank's recent step time.
func (s *Server) stallThresholdLocked() time.Duration {
	var every time.Duration
	for _, j := range s.joiners {
		if j.state == "running" {
			every = max(every, j.stepEvery)
		}
	}
	return max(s.cfg.StallAfter, time.Duration(s.cfg.StallSteps)*every)
}

// stepWatchdog warns once per stall when a running job's steps stop
// advancing (on every rank, or on some while others moved on), naming
// each rank's state, so a hang shows in the log before any deadline ends
// it.
func (s *Server) stepWatchdog(ctx context.Context) {
	// Often enough that a frozen rank's report comes before memberlist's
	// verdict on it ends the job (rankDied reports the waits then too).
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.finished:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.state != pb.JobState_JOB_STATE_RUNNING {
			s.mu.Unlock()
			continue
		}
		health := s.healthLocked(time.Now())
		var bad []string
		var key strings.Builder
		for r, h := range health {
			if strings.HasPrefix(h, "stalled") || strings.HasPrefix(h, "missing") {
				bad = append(bad, fmt.Sprintf("rank %d %s", r, h))
				fmt.Fprintf(&key, "%d@%d ", r, s.joiners[r].step)
			}
		}
		// one warning per stall: the same ranks stuck at the same steps
		warn := len(bad) > 0 && s.stallSeen != key.String()
		if warn {
			s.stallSeen = key.String()
		}
		threshold := s.stallThresholdLocked()
		var waits []string
		if warn {
			waits = s.waitsLocked(time.Now())
		}
		s.mu.Unlock()
		if warn {
			s.log.Warn("step watchdog: steps stopped advancing", zap.Strings("ranks", bad), zap.Duration("threshold", threshold))
			for _, w := range waits {
				s.log.Warn("step watchdog: " + w)
			}
		}
	}
}

// Abort implements pb.CoordinatorServer.
func (s *Server) Abort(_ context.Context, req *pb.AbortRequest) (*pb.AbortReply, error) {
	reason := req.Reason
	if reason == "" {
		reason = "aborted"
	}
	if req.Rank >= 0 {
		reason = fmt.Sprintf("rank %d aborted the job: %s", req.Rank, reason)
	}
	s.fail(-1, reason)
	return &pb.AbortReply{}, nil
}

// Leave implements pb.CoordinatorServer.
func (s *Server) Leave(_ context.Context, req *pb.LeaveRequest) (*pb.LeaveReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == pb.JobState_JOB_STATE_WAITING || req.Rank < 0 || int(req.Rank) >= len(s.joiners) {
		return nil, status.Errorf(codes.FailedPrecondition, "leave: rank %d has no place in the job", req.Rank)
	}
	j := s.joiners[req.Rank]
	j.lastSeen = time.Now()
	if j.state == "dead" || j.state == "left" || j.state == "failed" {
		return &pb.LeaveReply{}, nil
	}
	if req.Error != "" {
		j.state, j.err = "failed", req.Error
		s.failLocked(int(req.Rank), fmt.Sprintf("rank %d (host %s, pid %d) failed: %s", req.Rank, j.req.Host, j.req.Pid, req.Error))
		return &pb.LeaveReply{}, nil
	}
	j.state = "left"
	s.log.Info("rank left", zap.Int32("rank", req.Rank))
	for _, o := range s.joiners {
		if o.state != "left" {
			return &pb.LeaveReply{}, nil
		}
	}
	if s.state == pb.JobState_JOB_STATE_RUNNING {
		s.state = pb.JobState_JOB_STATE_DONE
		close(s.finished)
		s.log.Info("every rank left; job done")
	}
	return &pb.LeaveReply{}, nil
}

// ---- gossip events ----

type gossipEvents struct{ s *Server }

func (g gossipEvents) NotifyJoin(n *memberlist.Node) {
	if r, ok := rankFromGossipName(n.Name); ok {
		g.s.mu.Lock()
		g.s.gossipUp[r] = true
		g.s.mu.Unlock()
	}
}

func (g gossipEvents) NotifyLeave(n *memberlist.Node) {
	if r, ok := rankFromGossipName(n.Name); ok {
		g.s.mu.Lock()
		g.s.gossipUp[r] = false
		g.s.mu.Unlock()
		go g.s.confirmDead(r, n.Address())
	}
}

// confirmDead fails rank once memberlist's verdict is backed by silence on
// the heartbeat channel too (see Config.HeartbeatStale), and forgets the
// verdict if memberlist sees the rank alive again first.
func (s *Server) confirmDead(rank int, addr string) {
	warned := false
	for {
		s.mu.Lock()
		if s.state != pb.JobState_JOB_STATE_RUNNING || rank < 0 || rank >= len(s.joiners) {
			s.mu.Unlock()
			return
		}
		up := s.gossipUp[rank]
		age := time.Since(s.joiners[rank].lastSeen)
		s.mu.Unlock()
		if up {
			s.log.Warn("memberlist hears from the rank again", zap.Int("dead_rank", rank))
			return
		}
		if age >= s.cfg.HeartbeatStale {
			s.rankDied(rank, fmt.Sprintf("memberlist stopped hearing from it (at %s) and its last heartbeat was %v ago", addr, age.Round(100*time.Millisecond)))
			return
		}
		if !warned {
			s.log.Warn("memberlist says a rank is gone but it still heartbeats; waiting", zap.Int("dead_rank", rank), zap.Duration("last_heartbeat", age))
			warned = true
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-s.finished:
			return
		}
	}
}

func (g gossipEvents) NotifyUpdate(*memberlist.Node) {}

// ---- helpers ----

func meshToPB(m mesh.Mesh) *pb.Mesh {
	return &pb.Mesh{Dp: int32(m.DP), Tp: int32(m.TP), Pp: int32(m.PP)}
}

// MeshFromPB converts the wire mesh, validating it.
func MeshFromPB(m *pb.Mesh) (mesh.Mesh, error) {
	if m == nil {
		return mesh.Mesh{}, errors.New("no mesh in reply")
	}
	return mesh.New(int(m.Dp), int(m.Tp), int(m.Pp))
}

func jobStateName(s pb.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

// JobStateName renders a job state for humans: "waiting", "running", ...
func JobStateName(s pb.JobState) string { return jobStateName(s) }

// Hostname returns the node's short host name, or "localhost".
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}
