package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/worker"
)

// This file holds the job plumbing the fine-tuning commands (sft, and the
// later stages) share: launching local or multi-node workers running the
// same subcommand, and a worker joining its job and building the trainer's
// communicators. It follows cmd_train.go's runTrain/trainWorker without
// elastic restarts.

// launchJob starts the workers of a job for subcommand name with args.
func launchJob(ctx context.Context, lf *launcher.Flags, m mesh.Mesh, name []string, args []string, stdout, stderr io.Writer) error {
	common := launcher.Common{
		Transport: lf.Transport, Bind: lf.Bind, LogFormat: lf.LogFormat, Token: lf.Token,
		JoinTimeout: lf.JoinTimeout, MetricsAddr: lf.Metrics,
	}
	argv := append(append([]string(nil), name...), args...)
	fmt.Fprintf(stderr, "launching %d workers, mesh %v\n", m.World(), m)
	if lf.MultiNode() {
		return launcher.Node(ctx, launcher.NodeConfig{
			NNodes: lf.NNodes, NodeRank: lf.NodeRank, Coordinator: lf.Coordinator, NProcPerNode: lf.NProcPerNode,
			Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common,
		})
	}
	return launcher.Local(ctx, launcher.LocalConfig{NProc: m.World(), Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common})
}

// asWorker joins the job this process was launched into, builds the
// trainer's communicators (with the tied-embedding group between first and
// last pipeline stage) and runs body; the outcome is reported when leaving.
// threads is set to the machine's cores shared among the job's ranks when 0.
func asWorker(ctx context.Context, lf *launcher.Flags, threads *int, body func(ctx context.Context, d *distributed) error) error {
	rt, err := worker.Join(ctx, worker.FromFlags(lf))
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancelCause(rt.Context())
	defer stop(nil)
	go func() {
		select {
		case <-ctx.Done():
			stop(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		case <-runCtx.Done():
		}
	}()
	err = func() error {
		if *threads == 0 {
			*threads = max(1, runtime.NumCPU()/rt.Mesh.World())
		}
		comms := &trainer.Comms{Mesh: rt.Mesh, Coord: rt.Coord, DP: rt.DP, TP: rt.TP, PP: rt.PP}
		if rt.Mesh.PP > 1 && (rt.Coord.PP == 0 || rt.Coord.PP == rt.Mesh.PP-1) {
			first, last := rt.Coord, rt.Coord
			first.PP, last.PP = 0, rt.Mesh.PP-1
			ranks := []int{rt.Mesh.Rank(first), rt.Mesh.Rank(last)}
			if comms.Embed, err = collective.New(rt.Transport, ranks, collective.Options{Name: "tied-embedding"}); err != nil {
				return err
			}
		}
		job := &jobInfo{rank: rt.Rank, world: rt.Mesh.World(), report: rt.Report, barrier: rt.Barrier, local: isLoopback(rt.Job.Coordinator)}
		return body(runCtx, &distributed{comms: comms, job: job})
	}()
	if err == nil && context.Cause(runCtx) != nil && rt.Context().Err() == nil {
		err = context.Cause(runCtx)
	}
	lctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return rt.Leave(lctx, err)
}
