package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/worker"
)

// This file is the job plumbing every training command shares: launching
// local or multi-node workers that run the same subcommand (with elastic
// restarts), and a worker joining its job and building the trainer's
// communicators.

// distributed carries a worker's communicators and job hooks into a
// command's body.
type distributed struct {
	comms *trainer.Comms
	job   *jobInfo
	// interrupt is closed when the operator stops the job (Ctrl-C,
	// SIGTERM): the run loop checkpoints and ends at the next step.
	interrupt <-chan struct{}
}

type jobInfo struct {
	rank, world int
	hosts       []string // each rank's host name
	report      func(step int, m map[string]float64)
	barrier     func(ctx context.Context) error
}

// runInfo returns the mesh facts of this process and a logger for rank 0.
func runInfo(dist *distributed, stderr io.Writer) (rank int, m mesh.Mesh, coord mesh.Coord, comms *trainer.Comms, logf func(string, ...any)) {
	m = mesh.Mesh{DP: 1, TP: 1, PP: 1}
	if dist != nil {
		comms, rank, m, coord = dist.comms, dist.job.rank, dist.comms.Mesh, dist.comms.Coord
	}
	lead := rank == 0
	logf = func(format string, a ...any) {
		if lead {
			fmt.Fprintf(stderr, format, a...)
		}
	}
	return rank, m, coord, comms, logf
}

// jobLaunch is a job to start from this process.
type jobLaunch struct {
	lf          *launcher.Flags
	mesh        mesh.Mesh
	argv        []string // the workers' subcommand and flags
	maxRestarts int      // elastic restarts (strand train --max-restarts)
	out         string   // the run directory (for the interrupt message)
	// check validates the options on a regrouped (smaller) mesh.
	check func(mesh.Mesh) error
}

// launch starts the workers and waits for them; on a failure it restarts
// the job up to maxRestarts times, every restart a new epoch resuming from
// the last checkpoint (for multi-node jobs after regrouping the nodes that
// came back). An operator's interrupt is reported as trainer.Interrupted.
func (j jobLaunch) launch(ctx context.Context, stdout, stderr io.Writer) error {
	lf, m, argv := j.lf, j.mesh, j.argv
	common := launcher.Common{
		Transport: lf.Transport, Bind: lf.Bind, LogFormat: lf.LogFormat, Token: lf.Token,
		JoinTimeout: lf.JoinTimeout, MetricsAddr: lf.Metrics,
		TLSCert: lf.TLSCert, TLSKey: lf.TLSKey, TLSCA: lf.TLSCA, TLSAuto: lf.TLSAuto,
		// the run loop checkpoints at the next step after an interrupt
		InterruptGrace: interruptGrace + 5*time.Second,
	}
	nnodes, nodeRank := lf.NNodes, lf.NodeRank
	if !lf.MultiNode() {
		// this process reports the job's outcome: workers need not
		common.Env = append(common.Env, launcherReportsEnv+"=1")
	}
	started, removeJobFile := jobFileHook(j.out, func() int64 { return common.Epoch }, func(err error) { fmt.Fprintln(stderr, "warning:", err) })
	defer removeJobFile()
	common.Started = started
	var err error
	for restart := 0; ; restart++ {
		// Every (re)start is an epoch: coordinator and workers refuse
		// anyone of another epoch.
		common.Epoch = int64(restart)
		if restart > 0 && lf.MultiNode() {
			if nnodes, nodeRank, m, err = j.regroup(ctx, common, restart, nnodes, nodeRank, m, err, stderr); err != nil {
				return err
			}
		}
		fmt.Fprintln(stderr, launcher.LaunchLine(nnodes, nodeRank, lf.NProcPerNode, m, restart))
		if lf.MultiNode() {
			err = launcher.Node(ctx, launcher.NodeConfig{
				NNodes: nnodes, NodeRank: nodeRank, Coordinator: lf.Coordinator, NProcPerNode: lf.NProcPerNode,
				Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common,
			})
		} else {
			err = launcher.Local(ctx, launcher.LocalConfig{NProc: m.World(), Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common})
		}
		var elsewhere *launcher.InterruptedError
		if ctx.Err() != nil || errors.As(err, &elsewhere) {
			return interruptedJob(j.out)
		}
		if err == nil || restart >= j.maxRestarts {
			if err != nil && j.maxRestarts > 0 {
				err = fmt.Errorf("%w (the job failed again after its last restart: all %d restarts are used up)", err, j.maxRestarts)
			}
			return err
		}
		// Elastic recovery: the failed job is torn down; start a new one
		// (new coordinator, new epoch) that resumes from the last
		// committed checkpoint.
		fmt.Fprintf(stderr, "strand: job failed (%v); restart %d of %d from the last checkpoint in %s\n", err, restart+1, j.maxRestarts, j.out)
		argv = withResume(argv, restart+1)
	}
}

// regroup agrees, through node 0, on the new epoch's nodes and mesh (a
// smaller DP when a node is gone and --min-nodes allows it).
func (j jobLaunch) regroup(ctx context.Context, common launcher.Common, restart, nnodes, nodeRank int, m mesh.Mesh, failed error, stderr io.Writer) (int, int, mesh.Mesh, error) {
	lf := j.lf
	plan, err := launcher.Regroup(ctx, launcher.RegroupConfig{
		NNodes: nnodes, NodeRank: nodeRank, MinNodes: min(lf.MinNodesOrAll(), nnodes), NProcPerNode: lf.NProcPerNode,
		Coordinator: lf.Coordinator, Mesh: m, Timeout: lf.RejoinTimeout, Common: common,
	})
	if err != nil {
		return 0, 0, m, fmt.Errorf("elastic restart %d: %w (the job failed with: %v)", restart, err, failed)
	}
	fmt.Fprintf(stderr, "strand: regrouped for epoch %d: %d of %d node(s) back, this is node %d\n", restart, plan.NNodes, nnodes, plan.NodeRankOf(nodeRank))
	if pm := plan.Mesh(); pm != m {
		if err := j.check(pm); err != nil {
			return 0, 0, m, fmt.Errorf("elastic restart %d on %d node(s), mesh %v: %w", restart, plan.NNodes, pm, err)
		}
		fmt.Fprintf(stderr, "strand: continuing on %d of %d node(s) (missing %v): mesh %v -> %v\n", plan.NNodes, nnodes, plan.Missing, m, pm)
	}
	return plan.NNodes, plan.NodeRankOf(nodeRank), plan.Mesh(), nil
}

// interruptedJob is the launcher's report of an operator's interrupt: the
// run's newest checkpoint, if any.
func interruptedJob(out string) error {
	e := &trainer.Interrupted{Step: -1, Out: out}
	if dir, _, err := checkpoint.Resolve(out); err == nil {
		e.Checkpoint = dir
		var st trainer.State
		if checkpoint.LoadTrainerState(dir, &st) == nil {
			e.Step = st.Step
		}
	}
	return e
}

// withResume returns argv with --resume set (and --overwrite dropped: the
// restart continues this run) and the restart count recorded (workers
// write it into the metrics).
func withResume(argv []string, restart int) []string {
	out := make([]string, 0, len(argv)+2)
	for _, a := range argv {
		if a == "--resume" || a == "-resume" || a == "--overwrite" || a == "-overwrite" || strings.HasPrefix(a, "--restart-count") {
			continue
		}
		out = append(out, a)
	}
	return append(out, "--resume", fmt.Sprintf("--restart-count=%d", restart))
}

// interruptGrace is how long a worker's body may run on after the
// operator's interrupt before its context is cancelled: the run loop
// checkpoints within it.
const interruptGrace = 20 * time.Second

// launcherReportsEnv tells workers of a local job that the launching
// process reports the job's outcome once (worker.Options.LauncherReports).
const launcherReportsEnv = "STRAND_LAUNCHER_REPORTS"

// workerOptions turns the shared launcher flags into the worker's options.
func workerOptions(f *launcher.Flags) worker.Options {
	return worker.Options{LauncherReports: os.Getenv(launcherReportsEnv) == "1", DP: f.DP, TP: f.TP, PP: f.PP, Transport: f.Transport, Bind: f.Bind, LogFormat: f.LogFormat,
		JoinTimeout: f.JoinTimeout, ConnectTimeout: f.ConnectTimeout, MetricsPortBase: f.WorkerMetricsPort,
		RDMAProvider: f.RDMAProvider}
}

// noteOperator tells rt, just before it leaves, whether the operator
// stopped this process (ctx ended for any reason but a lost launcher), so
// that a rank stopped mid-collective leaves at once saying so instead of
// waiting to be blamed (worker.Runtime.OperatorStop). ctx.Err is set
// before anyone sees ctx end, so this cannot miss the stop.
func noteOperator(ctx context.Context, rt *worker.Runtime) {
	var gone *launcher.LauncherGoneError
	if ctx.Err() != nil && !errors.As(context.Cause(ctx), &gone) {
		rt.OperatorStop()
	}
}

// asWorker joins the job this process was launched into, builds the
// trainer's communicators and runs body; the outcome is reported when
// leaving. threads is set to the machine's cores shared among the job's
// ranks when 0. The operator's interrupt (ctx) does not cancel body's
// context: the run loop sees it through distributed.interrupt and stops
// at a step boundary every rank agrees on, after a checkpoint.
func asWorker(ctx context.Context, lf *launcher.Flags, threads *int, body func(ctx context.Context, d *distributed) error) error {
	rt, err := worker.Join(ctx, workerOptions(lf))
	if err != nil {
		return err
	}
	err = func() error {
		if *threads == 0 {
			*threads = max(1, runtime.NumCPU()/rt.Mesh.World())
		}
		comms := &trainer.Comms{Mesh: rt.Mesh, Coord: rt.Coord, DP: rt.DP, TP: rt.TP, PP: rt.PP}
		if comms.Embed, err = rt.TiedEmbedding(); err != nil {
			return err
		}
		job := &jobInfo{rank: rt.Rank, world: rt.Mesh.World(), report: rt.Report, barrier: rt.Barrier}
		for _, mb := range rt.Members {
			job.hosts = append(job.hosts, mb.GetHost())
		}
		bodyCtx, stop := context.WithCancelCause(rt.Context())
		defer stop(nil)
		go func() {
			// A body that is not in the run loop (loading data, a final
			// evaluation) does not watch the interrupt: cancel it if it
			// has not ended a while after the operator asked.
			select {
			case <-ctx.Done():
			case <-bodyCtx.Done():
				return
			}
			select {
			case <-time.After(interruptGrace):
				stop(errors.New("interrupted by the operator"))
			case <-bodyCtx.Done():
			}
		}()
		return body(bodyCtx, &distributed{comms: comms, job: job, interrupt: ctx.Done()})
	}()
	lctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var intr *trainer.Interrupted
	var gone *launcher.LauncherGoneError
	if errors.As(context.Cause(ctx), &gone) {
		// not the operator: the launcher died (a run loop that saw its
		// interrupt checkpointed first); say so and fail
		if errors.As(err, &intr) || err == nil {
			err = gone
		} else {
			err = launcher.WithCause(ctx, err)
		}
	}
	noteOperator(ctx, rt)
	if !errors.As(err, &intr) {
		err = rt.Leave(lctx, err)
		if err != nil && rt.LauncherReports() {
			// strand's local launcher prints the job's failure once,
			// with the coordinator's reason: not once per rank.
			return quietExit{code: 1, err: err}
		}
		return err
	}
	// The operator's stop is a clean end, not a failure: every rank
	// leaves normally (the job does not fail, no rank is blamed), and it
	// is reported once: by strand's launcher, or by rank 0 under srun,
	// Kubernetes or torchrun.
	if lerr := rt.Leave(lctx, nil); lerr != nil {
		return fmt.Errorf("%w (leaving the job: %v)", intr, lerr)
	}
	if rt.Job.Source == "strand" || rt.Rank != 0 {
		return quietExit{code: intr.ExitCode(), err: intr}
	}
	return intr
}
