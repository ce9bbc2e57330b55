package launcher

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/coordinator"
	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/obs"
)

// failedJobGrace is how long workers of a failed job may take to exit on
// their own before they are killed.
const failedJobGrace = 10 * time.Second

// LocalConfig describes a job whose workers all run on this machine.
type LocalConfig struct {
	NProc int
	// Mesh is the layout; the zero Mesh means all data-parallel.
	Mesh mesh.Mesh
	// Args is the argv (without the program name) each worker runs: the
	// same subcommand and flags as the launcher, typically os.Args[1:].
	Args           []string
	Stdout, Stderr io.Writer
	Common
}

// Common holds the settings Local and Node share.
type Common struct {
	Executable  string        // worker binary; default os.Executable()
	Env         []string      // extra KEY=VALUE variables for every worker
	Transport   string        // passed to workers; default "auto"
	Bind        string        // transport bind spec passed to workers
	LogFormat   string        // passed to workers; default "console"
	Token       string        // job token; default random (local jobs)
	JobID       string        // default "strand-<random>"
	JoinTimeout time.Duration // coordinator's wait for all workers
	KillGrace   time.Duration // SIGTERM to SIGKILL; default 5 s
	// InterruptGrace is how long workers get after the operator's
	// interrupt to stop on their own (a training run checkpoints at the
	// next step and leaves) before the coordinator fails the job as
	// interrupted and the kill follows; 0: the job fails at once.
	InterruptGrace time.Duration
	MetricsAddr    string // coordinator /metrics address, "" = off
	// TLSCert and TLSKey enable TLS on the coordinator node 0 hosts; TLSCA
	// (default TLSCert) is passed to workers to verify it.
	TLSCert, TLSKey, TLSCA string
	// TLSAuto runs the coordinator over TLS with a job CA every node
	// derives from the token (see jobTLS) when no files are given.
	TLSAuto      bool
	RDMAProvider string // passed to workers (STRAND_RDMA_PROVIDER)
	// Log is the launcher's and the coordinator's log. Default: a zap
	// logger in LogFormat on Stderr, its lines prefixed "[coordinator] "
	// as workers' lines are "[rank N] ".
	Log *zap.Logger
	// Started, when set, is called on node 0 once the coordinator listens,
	// with the address clients reach it at and the job's token (e.g. to
	// record them for strand status).
	Started func(addr, token string)
	// Epoch is the job incarnation: 0 for the first launch, +1 for each
	// elastic restart. The coordinator and the workers (STRAND_EPOCH) refuse
	// anyone of another epoch.
	Epoch int64
}

// NodeConfig describes this node's share of a multi-node job.
type NodeConfig struct {
	NNodes, NodeRank int
	// Coordinator is node 0's HOST:PORT; node 0 listens on its port.
	Coordinator  string
	NProcPerNode int
	Mesh         mesh.Mesh
	Args         []string
	Stdout       io.Writer
	Stderr       io.Writer
	Common
}

// ExitError reports the first worker that failed.
type ExitError struct {
	Rank   int
	Code   int    // process exit code; 128+signal when killed by a signal
	Signal string // the signal that killed it, if any
	Reason string // the coordinator's account of the failure, if it has one
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("rank %d exited with code %d", e.Rank, e.Code)
	if e.Signal != "" {
		msg = fmt.Sprintf("rank %d was killed by signal %s", e.Rank, e.Signal)
	}
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// ExitCode is the exit code the launcher process should end with.
func (e *ExitError) ExitCode() int { return e.Code }

// Local runs a job of cfg.NProc workers on this machine with an embedded
// coordinator on 127.0.0.1 (random port, random token). It returns nil when
// every worker exits 0, an *ExitError naming the first failure otherwise.
func Local(ctx context.Context, cfg LocalConfig) error {
	if cfg.NProc < 1 {
		return fmt.Errorf("launcher: --nproc %d must be at least 1", cfg.NProc)
	}
	m := cfg.Mesh
	if m == (mesh.Mesh{}) {
		m = mesh.Mesh{DP: cfg.NProc, TP: 1, PP: 1}
	}
	if m.World() != cfg.NProc {
		return fmt.Errorf("launcher: mesh %v has %d ranks but --nproc is %d", m, m.World(), cfg.NProc)
	}
	return Node(ctx, NodeConfig{
		NNodes: 1, NodeRank: 0, Coordinator: "127.0.0.1:0", NProcPerNode: cfg.NProc,
		Mesh: m, Args: cfg.Args, Stdout: cfg.Stdout, Stderr: cfg.Stderr, Common: cfg.Common,
	})
}

// Node runs this node's workers of a multi-node job; node 0 also hosts the
// coordinator on the port of cfg.Coordinator. Every node must be given the
// same token (cfg.Token, else $STRAND_TOKEN).
func Node(ctx context.Context, cfg NodeConfig) error {
	if err := cfg.fill(); err != nil {
		return err
	}
	cleanTLS, jobCA, err := cfg.jobTLS(cfg.NodeRank, cfg.Coordinator)
	if err != nil {
		return err
	}
	defer cleanTLS()
	out := &lockedWriter{w: cfg.Stdout}
	errw := &lockedWriter{w: cfg.Stderr}
	log := cfg.Log
	if log == nil {
		pw := &prefixWriter{w: errw, prefix: "[coordinator] "}
		if cfg.LogFormat == "json" {
			pw.tag = func(line []byte) []byte { return withKey(line, "component", `"coordinator"`) } // lines stay JSON
		}
		if log, err = obs.NewLogger(cfg.LogFormat, -1, pw); err != nil {
			return fmt.Errorf("launcher: %w", err)
		}
	}
	coordAddr := cfg.Coordinator
	if jobCA {
		log.Info("TLS with the job CA derived from the token", zap.String("ca", cfg.TLSCA), zap.Bool("serves_coordinator", cfg.TLSCert != ""))
	}
	if cfg.NNodes > 1 && cfg.TLSCert == "" && cfg.TLSCA == "" {
		log.Warn("NO TLS: this multi-node job's coordinator traffic (the job token included) and its data transport's (activations, gradients) " +
			"cross the network in the clear; give every node --tls-auto, or --tls-cert/--tls-key (node 0) and --tls-ca")
	}
	var srv *coordinator.Server
	if cfg.NodeRank == 0 {
		host, port, err := net.SplitHostPort(cfg.Coordinator)
		if err != nil {
			return fmt.Errorf("launcher: --coordinator %q: %w", cfg.Coordinator, err)
		}
		listen, adv := cfg.Coordinator, host
		if cfg.NNodes > 1 {
			// Other nodes reach us through HOST, which may name an address
			// we cannot bind directly (NAT, DNS alias): listen everywhere.
			listen = net.JoinHostPort("0.0.0.0", port)
			if adv, err = AdvertiseIP(cfg.Coordinator); err != nil {
				return err
			}
		}
		srv, err = coordinator.Start(coordinator.Config{
			Addr: listen, Mesh: cfg.Mesh, Token: cfg.Token, JobID: cfg.JobID, JoinTimeout: cfg.JoinTimeout, Epoch: cfg.Epoch,
			Gossip: coordinator.GossipConfig{Advertise: adv}, MetricsAddr: cfg.MetricsAddr, Log: log,
			CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey,
		})
		if err != nil {
			return fmt.Errorf("launcher: %w", err)
		}
		defer srv.Close()
		if cfg.NNodes == 1 {
			coordAddr = srv.Addr()
		}
		if cfg.Started != nil {
			cfg.Started(coordAddr, cfg.Token)
		}
	}

	procs := make([]*proc, cfg.NProcPerNode)
	exits := make(chan *proc, len(procs))
	for local := range procs {
		rank := cfg.NodeRank*cfg.NProcPerNode + local
		p, err := cfg.spawn(rank, local, coordAddr, out, errw)
		if err != nil {
			for _, q := range procs[:local] {
				q.signal(syscall.SIGKILL)
			}
			return fmt.Errorf("launcher: start rank %d: %w", rank, err)
		}
		procs[local] = p
		go func() { p.wait(); exits <- p }()
	}
	log.Info("workers started", zap.Int("node_rank", cfg.NodeRank), zap.Int("nproc", len(procs)), zap.String("coordinator", coordAddr))

	var first *ExitError
	var coordDone <-chan struct{}
	if srv != nil {
		coordDone = srv.Finished()
	}
	// killTimer fires SIGKILL at workers still running after a teardown
	// (or after the coordinator failed the job and they did not exit).
	var killTimer <-chan time.Time
	var failTimer <-chan time.Time // the interrupt's grace before failing the job
	tearingDown := false
	tearDown := func(why string, grace time.Duration) {
		if tearingDown {
			return
		}
		tearingDown = true
		log.Info("tearing down workers", zap.String("why", why))
		for _, p := range procs {
			p.signal(syscall.SIGTERM)
			p.signal(syscall.SIGCONT) // a stopped worker must run to see SIGTERM
		}
		killTimer = time.After(grace + cfg.KillGrace)
	}
	interrupted := func() {
		// The job ends by the operator's will: the coordinator says so
		// (every worker on every node stops with that reason at once, no
		// rank is blamed for the context its own signal cancelled).
		if srv != nil {
			srv.Fail(InterruptedReason)
		}
	}
	interruptedElsewhere := false
	sentKill := false // the launcher sent SIGKILL (killTimer)
	ctxDone := ctx.Done()
	for running := len(procs); running > 0; {
		select {
		case p := <-exits:
			running--
			if p.code == InterruptedExitCode && p.sig == "" && !p.terminated {
				// The operator stopped the job on another node (or
				// through the coordinator): this worker left cleanly
				// saying so. The others follow on their own; the timer
				// only catches one that does not.
				interruptedElsewhere = true
				if killTimer == nil {
					killTimer = time.After(cfg.InterruptGrace + failedJobGrace)
				}
				continue
			}
			// Exits race each other: a survivor told of a failure may be
			// reaped (and the rest torn down) before the worker that
			// caused it. A worker killed by a signal this launcher never
			// sent is that cause, even when it is reaped after the
			// teardown signalled it.
			if p.code != 0 && (!p.terminated || p.killedElsewhere(sentKill)) && (first == nil || first.Signal == "" && p.sig != "") {
				first = &ExitError{Rank: p.rank, Code: p.code, Signal: p.sig}
				tearDown(first.Error(), 0)
			}
		case <-coordDone:
			coordDone = nil
			if st, reason, _ := srv.Result(); st == pb.JobState_JOB_STATE_FAILED {
				// Workers learn of this themselves; the timer only
				// catches one that does not exit. (The coordinator,
				// in this process, has logged the failure at ERROR.)
				log.Debug("coordinator reports the job failed; waiting for the workers to exit", zap.String("reason", reason))
				if killTimer == nil {
					killTimer = time.After(failedJobGrace)
				}
			}
		case <-ctxDone:
			ctxDone = nil
			if cfg.InterruptGrace > 0 {
				// workers that stop on their own (checkpointing) first
				failTimer = time.After(cfg.InterruptGrace)
			} else {
				interrupted()
			}
			tearDown(InterruptedReason, cfg.InterruptGrace)
		case <-failTimer:
			failTimer = nil
			interrupted()
		case <-killTimer:
			killTimer, sentKill = nil, true
			for _, p := range procs {
				p.signal(syscall.SIGKILL)
			}
			killTimer = make(chan time.Time) // never fires again
		}
	}
	if srv != nil && first == nil && interruptedElsewhere && ctx.Err() == nil {
		if st, _, _ := srv.Result(); st != pb.JobState_JOB_STATE_FAILED {
			// the workers left cleanly: the job is over, not failed
			srv.Fail(InterruptedReason)
		}
	}
	if srv != nil && first != nil {
		if st, reason, dead := srv.Result(); st == pb.JobState_JOB_STATE_FAILED && dead < 0 && reason == InterruptedReason {
			// a worker that failed because the operator stopped the
			// job: not the job's failure
			first, interruptedElsewhere = nil, true
		}
	}
	if srv != nil && first != nil {
		printFlightDiagnosis(srv, cfg.Mesh.World(), errw)
	}
	if srv != nil && first != nil {
		_, reason, dead := srv.Result()
		first.Reason = reason
		// Exits race with each other: a survivor told of the failure may
		// be reaped before the worker that caused it. The coordinator knows
		// the culprit; if it is one of ours, its exit is the job's.
		if i := dead - cfg.NodeRank*cfg.NProcPerNode; i >= 0 && i < len(procs) && procs[i].code != 0 && (!procs[i].terminated || procs[i].killedElsewhere(sentKill)) {
			p := procs[i]
			first = &ExitError{Rank: p.rank, Code: p.code, Signal: p.sig, Reason: reason}
		}
	}
	if first != nil {
		return first
	}
	if ctx.Err() != nil {
		return &InterruptedError{Cause: context.Cause(ctx)}
	}
	if interruptedElsewhere {
		return &InterruptedError{}
	}
	return nil
}

// InterruptedReason is the job's failure reason when the operator stops
// it (Ctrl-C, SIGTERM to the launcher); the launcher's and the workers'
// shared word (jobenv).
const InterruptedReason = jobenv.InterruptedReason

// InterruptedExitCode is how a worker the operator stopped exits (see
// jobenv.InterruptedExitCode).
const InterruptedExitCode = jobenv.InterruptedExitCode

// InterruptedError is Node's result when the operator stopped the job:
// through this launcher (Cause: its context's, e.g. the signal), or
// elsewhere (Cause nil: on another node, or by a signal to the workers
// themselves), and this node's workers exited as interrupted.
type InterruptedError struct{ Cause error }

func (e *InterruptedError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("launcher: %s (%v)", InterruptedReason, e.Cause)
	}
	return "launcher: " + InterruptedReason + " (the workers were stopped, not by this launcher)"
}

func (e *InterruptedError) Unwrap() error { return e.Cause }

// ExitCode is InterruptedExitCode.
func (e *InterruptedError) ExitCode() int { return InterruptedExitCode }

func (cfg *NodeConfig) fill() error {
	if cfg.NNodes < 1 || cfg.NodeRank < 0 || cfg.NodeRank >= cfg.NNodes {
		return fmt.Errorf("launcher: node rank %d outside %d nodes", cfg.NodeRank, cfg.NNodes)
	}
	if cfg.NProcPerNode < 1 {
		return fmt.Errorf("launcher: %d processes per node", cfg.NProcPerNode)
	}
	if err := cfg.Mesh.Validate(); err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	if w := cfg.NNodes * cfg.NProcPerNode; cfg.Mesh.World() != w {
		return fmt.Errorf("launcher: mesh %v has %d ranks but %d nodes x %d processes = %d", cfg.Mesh, cfg.Mesh.World(), cfg.NNodes, cfg.NProcPerNode, w)
	}
	if cfg.Coordinator == "" {
		return errors.New("launcher: no coordinator address")
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("launcher: find own executable: %w", err)
		}
		cfg.Executable = exe
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv(jobenv.Token)
	}
	if cfg.Token == "" {
		if cfg.NNodes > 1 {
			return fmt.Errorf("launcher: a multi-node job needs the same --token (or $%s) on every node", jobenv.Token)
		}
		cfg.Token = randomHex(16)
	}
	if cfg.JobID == "" {
		cfg.JobID = "strand-" + randomHex(4)
		if cfg.NNodes > 1 {
			cfg.JobID = "strand" // must agree across nodes without talking
		}
	}
	if cfg.Transport == "" {
		cfg.Transport = "auto"
	}
	if cfg.LogFormat == "" {
		cfg.LogFormat = "console"
	}
	if cfg.TLSCA == "" {
		cfg.TLSCA = cfg.TLSCert
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	return nil
}

// proc is one worker process.
type proc struct {
	rank       int
	cmd        *exec.Cmd
	copying    sync.WaitGroup
	mu         sync.Mutex
	exited     bool
	terminated bool // we signalled it before it exited
	code       int
	sig        string
}

func (cfg *NodeConfig) spawn(rank, local int, coordAddr string, stdout, stderr *lockedWriter) (*proc, error) {
	cmd := exec.Command(cfg.Executable, cfg.Args...)
	cmd.Env = append(os.Environ(),
		jobenv.Coordinator+"="+coordAddr,
		jobenv.Token+"="+cfg.Token,
		jobenv.JobID+"="+cfg.JobID,
		jobenv.Rank+"="+strconv.Itoa(rank),
		jobenv.LocalRank+"="+strconv.Itoa(local),
		jobenv.NodeRank+"="+strconv.Itoa(cfg.NodeRank),
		jobenv.WorldSize+"="+strconv.Itoa(cfg.Mesh.World()),
		jobenv.Mesh+"="+jobenv.FormatMesh(cfg.Mesh.DP, cfg.Mesh.TP, cfg.Mesh.PP),
		jobenv.Transport+"="+cfg.Transport,
		jobenv.Bind+"="+cfg.Bind,
		jobenv.LogFormat+"="+cfg.LogFormat,
		jobenv.HostCoordinator+"=",
		jobenv.TLSCA+"="+cfg.TLSCA,
		jobenv.RDMAProvider+"="+cfg.RDMAProvider,
		jobenv.Epoch+"="+strconv.FormatInt(cfg.Epoch, 10),
		jobenv.LauncherPID+"="+strconv.Itoa(os.Getpid()),
	)
	dieWithLauncher(cmd)
	cmd.Env = append(cmd.Env, cfg.Env...)
	o, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	e, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{rank: rank, cmd: cmd}
	prefix := fmt.Sprintf("[rank %d] ", rank)
	tag := func(line []byte) []byte { return append([]byte(prefix), line...) }
	if cfg.LogFormat == "json" {
		tag = func(line []byte) []byte { return withRank(line, rank) } // lines stay JSON
	}
	p.copying.Add(2)
	go func() { defer p.copying.Done(); copyLines(stdout, o, tag) }()
	go func() { defer p.copying.Done(); copyLines(stderr, e, tag) }()
	return p, nil
}

// wait reaps the process after its output is drained and records how it ended.
func (p *proc) wait() {
	p.copying.Wait()
	err := p.cmd.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exited = true
	if err == nil {
		return
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.sig = ws.Signal().String()
			p.code = 128 + int(ws.Signal())
			return
		}
		p.code = ee.ExitCode()
		return
	}
	p.code = 1
}

// killedElsewhere says the worker died of SIGKILL that this launcher did
// not send (sentKill false: it only sent SIGTERM and SIGCONT).
func (p *proc) killedElsewhere(sentKill bool) bool {
	return !sentKill && p.sig == syscall.SIGKILL.String()
}

func (p *proc) signal(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return
	}
	p.terminated = true
	_ = p.cmd.Process.Signal(s)
}

// lockedWriter keeps lines from different workers whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) writeLine(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}

// prefixWriter writes each line written to it whole to w, prefixed (zap
// writes one entry, one or more lines, per call).
type prefixWriter struct {
	w      *lockedWriter
	prefix string
	tag    func([]byte) []byte // instead of the prefix, when set
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		switch {
		case len(line) == 0:
		case p.tag != nil:
			p.w.writeLine(p.tag(line))
		default:
			p.w.writeLine(append([]byte(p.prefix), line...))
		}
	}
	return len(b), nil
}

// copyLines copies r to w line by line, tagging each line with its rank.
func copyLines(w *lockedWriter, r io.Reader, tag func([]byte) []byte) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			w.writeLine(tag(line))
		}
		if err != nil {
			return
		}
	}
}

// printFlightDiagnosis shows, from the flight records the failing workers
// sent the coordinator, which collective each group was in and which ranks
// never entered it, so a hang is diagnosed from the launcher's output.
func printFlightDiagnosis(srv *coordinator.Server, world int, w *lockedWriter) {
	vals := srv.Values("flight/")
	if len(vals) == 0 {
		return
	}
	records := map[int][]collective.FlightEntry{}
	for k, v := range vals {
		var rank int
		if _, err := fmt.Sscanf(k, "flight/%d", &rank); err != nil {
			continue
		}
		var es []collective.FlightEntry
		if json.Unmarshal(v, &es) == nil {
			records[rank] = es
		}
	}
	ranks := make([]int, world)
	for i := range ranks {
		ranks[i] = i
	}
	diag := collective.Diagnose(records, ranks)
	if strings.TrimSpace(diag) == "" {
		return // no collective was in flight: nothing to show
	}
	var b strings.Builder
	b.WriteString("flight recorder (last collective of each group, from the ranks' records):\n")
	b.WriteString(diag)
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if line != "" {
			w.writeLine([]byte(line))
		}
	}
}

// AdvertiseIP returns the local IP address that routes to addr; see
// jobenv.AdvertiseIP (it lives there so that workers need not import the
// launcher).
func AdvertiseIP(addr string) (string, error) { return jobenv.AdvertiseIP(addr) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
