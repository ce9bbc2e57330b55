package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/obs"
	"github.com/strand-ml/strand/worker"
)

// runCheck is `strand check`: a smoke test of a job's wiring. Launched
// (--nproc, --nnodes) it starts the workers; as a worker it joins, runs an
// all-reduce with a known answer and a barrier on every group (world, dp,
// tp, pp), verifies the answer and leaves.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	lf := launcher.AddFlags(fs)
	iters := fs.Int("iters", 1, "rounds of collectives on every group")
	duration := fs.Duration("duration", 0, "keep running rounds at least this long (failure drills)")
	count := fs.Int("count", 4099, "float32 elements per all-reduce (a prime exercises uneven chunks)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *iters < 1 || *count < 0 {
		return usageError{"--iters must be at least 1 and --count not negative"}
	}
	if worker.InJob() {
		return checkWorker(ctx, lf, *iters, *duration, *count, stdout, stderr)
	}
	if !lf.Launching() {
		lf.NProc = 1
	}
	if err := lf.Validate(); err != nil {
		return usageError{err.Error()}
	}
	m, _ := lf.Mesh(lf.World())
	log, err := obs.NewLogger(lf.LogFormat, -1, stderr)
	if err != nil {
		return usageError{err.Error()}
	}
	common := launcher.Common{Log: log,
		Transport: lf.Transport, Bind: lf.Bind, LogFormat: lf.LogFormat, Token: lf.Token,
		JoinTimeout: lf.JoinTimeout, MetricsAddr: lf.Metrics, TLSCert: lf.TLSCert, TLSKey: lf.TLSKey, TLSCA: lf.TLSCA, TLSAuto: lf.TLSAuto,
		RDMAProvider: lf.RDMAProvider,
	}
	argv := append([]string{"check"}, args...)
	if lf.MultiNode() {
		err = launcher.Node(ctx, launcher.NodeConfig{
			NNodes: lf.NNodes, NodeRank: lf.NodeRank, Coordinator: lf.Coordinator, NProcPerNode: lf.NProcPerNode,
			Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common,
		})
	} else {
		err = launcher.Local(ctx, launcher.LocalConfig{NProc: lf.NProc, Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common})
	}
	if err == nil {
		fmt.Fprintf(stdout, "check passed: %d ranks, mesh %v\n", m.World(), m)
	}
	return err
}

// checkGroup runs one verified all-reduce and a barrier over comm.
// Element i holds (rank+1) + (i mod 7): small integers, so the float32
// sum is exact in any reduction order.
func checkGroup(ctx context.Context, comm *collective.Comm, name string, rank, round int, buf []float32) error {
	ranks := comm.Ranks()
	for i := range buf {
		buf[i] = float32(rank+1) + float32(i%7)
	}
	if err := comm.AllReduce(ctx, collective.F32(buf), collective.Sum); err != nil {
		return fmt.Errorf("round %d: %s all-reduce over ranks %v: %w", round, name, ranks, err)
	}
	base := 0
	for _, r := range ranks {
		base += r + 1
	}
	for i, v := range buf {
		if want := float32(base + len(ranks)*(i%7)); v != want {
			return fmt.Errorf("round %d: %s all-reduce over ranks %v: element %d = %v, want %v", round, name, ranks, i, v, want)
		}
	}
	if err := comm.Barrier(ctx); err != nil {
		return fmt.Errorf("round %d: %s barrier over ranks %v: %w", round, name, ranks, err)
	}
	return nil
}

func checkWorker(ctx context.Context, lf *launcher.Flags, iters int, duration time.Duration, count int, stdout, _ io.Writer) error {
	rt, err := worker.Join(ctx, workerOptions(lf))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "transport %s\n", rt.RouteSummary())
	runCtx, stop := context.WithCancelCause(rt.Context())
	defer stop(nil)
	go func() {
		select {
		case <-ctx.Done(): // SIGTERM / Ctrl-C
			stop(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		case <-runCtx.Done():
		}
	}()
	groups := []struct {
		name string
		comm *collective.Comm
	}{{"world", rt.World}, {"dp", rt.DP}, {"tp", rt.TP}, {"pp", rt.PP}}
	start := time.Now()
	buf := make([]float32, count)
	for round := 0; ; round++ {
		// Ranks must agree on when to stop, or one would wait forever in a
		// collective the others never enter: the world decides together
		// (stop as soon as any rank is done).
		stopFlag := []float32{0}
		if round >= iters && time.Since(start) >= duration {
			stopFlag[0] = 1
		}
		if err = rt.World.AllReduce(runCtx, collective.F32(stopFlag), collective.Max); err != nil {
			err = fmt.Errorf("round %d: agree on stopping: %w", round, err)
			break
		}
		if stopFlag[0] > 0 {
			break
		}
		t0 := time.Now()
		for _, g := range groups {
			if err = checkGroup(runCtx, g.comm, g.name, rt.Rank, round, buf); err != nil {
				break
			}
			if round == 0 {
				how := ""
				if g.comm.SharedWindows() {
					how = " (through shared windows)"
				}
				fmt.Fprintf(stdout, "%s group %v: all-reduce of %d floats and barrier ok%s\n", g.name, g.comm.Ranks(), count, how)
			}
		}
		if err != nil {
			break
		}
		rt.Report(round, map[string]float64{"check_round_seconds": time.Since(t0).Seconds()})
	}
	if err == nil && context.Cause(runCtx) != nil && rt.Context().Err() == nil {
		err = context.Cause(runCtx)
	}
	err = launcher.WithCause(ctx, err) // e.g. the launcher is gone
	lctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	noteOperator(ctx, rt)
	err = rt.Leave(lctx, err)
	if err == nil {
		fmt.Fprintf(stdout, "rank %d %v: every group verified\n", rt.Rank, rt.Coord)
	}
	return err
}
