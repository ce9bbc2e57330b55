// Command custom_loop is a training loop written against strand's packages
// instead of `strand train`: it joins a job, builds its shard of the model
// for its place in the DP x TP x PP mesh, and writes its own step — a
// micro-batch forward and backward through its pipeline stage, the
// data-parallel gradient sum, and AdamW — to show the seams a custom loop
// (a new loss, a new schedule) plugs into.
//
// Run it as a local job of 4 processes (2-way data parallel x 2-way tensor
// parallel):
//
//	go run ./examples/custom_loop -launch 4 -tp 2
//
// The launcher re-executes the running binary (os.Executable: go run's
// or go build's). Under Slurm or torchrun-style launchers, start it
// directly: worker.Join reads the rank from their environment.
//
// The loop keeps to one pipeline stage (PP = 1) so it stays short;
// examples/pipeline_loop drives the pipelined trainer over DP x PP.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/parallel/tensor"
	"github.com/strand-ml/strand/worker"
)

func main() {
	launch := flag.Int("launch", 0, "start a local job of N worker processes running this program")
	tp := flag.Int("tp", 1, "tensor-parallel degree")
	steps := flag.Int("steps", 30, "optimizer steps")
	flag.Parse()
	ctx := context.Background()
	var err error
	if *launch > 0 && !worker.InJob() {
		err = launchJob(ctx, *launch, *tp)
	} else {
		err = run(ctx, *tp, *steps)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "custom_loop:", err)
		os.Exit(1)
	}
}

// launchJob starts n copies of this program as one job (an embedded
// coordinator, rank-prefixed output, teardown on failure).
func launchJob(ctx context.Context, n, tp int) error {
	m, err := mesh.ForWorld(n, 0, tp, 1)
	if err != nil {
		return err
	}
	return launcher.Local(ctx, launcher.LocalConfig{NProc: n, Mesh: m, Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr})
}

func run(ctx context.Context, tpDegree, steps int) error {
	rt, err := worker.Join(ctx, worker.Options{TP: tpDegree})
	if err != nil {
		return err
	}
	err = train(rt, steps)
	lctx, cancel := context.WithTimeout(context.Background(), time.Minute) // Leave waits for every rank
	defer cancel()
	return rt.Leave(lctx, err)
}

func train(rt *worker.Runtime, steps int) error {
	ctx := rt.Context() // cancelled when any rank dies
	cfg, err := model.Preset("tiny")
	if err != nil {
		return err
	}
	const rowsPerRank, T = 4, 64

	// This rank's shard: heads and MLP columns split over the TP group.
	layout := model.Full(cfg)
	layout.TP = tensor.FromComm(rt.TP)
	m, err := model.NewSharded(cfg, layout, rowsPerRank, T, gemm.New(1))
	if err != nil {
		return err
	}
	m.Init(1) // every layout starts from the same logical weights
	acts := m.NewActs(rowsPerRank, T)

	var segs []optim.Segment
	for _, p := range m.Params.List {
		segs = append(segs, optim.Segment{Offset: p.Offset, Size: p.Size(), Decay: p.Decay})
	}
	opt, err := optim.NewAdamW(optim.DefaultAdamW(), m.Params.Count(), segs)
	if err != nil {
		return err
	}

	// Data: each data-parallel rank reads its rows of every global batch.
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog. ", 2000))
	tokens := make([]uint16, len(text))
	for i, b := range text {
		tokens[i] = uint16(b)
	}
	loader, err := data.NewLoader(tokens, data.LoaderConfig{Batch: rowsPerRank, Seq: T, DPRank: rt.Coord.DP, DPSize: rt.Mesh.DP})
	if err != nil {
		return err
	}
	in, tg := make([]int32, rowsPerRank*T), make([]int32, rowsPerRank*T)
	globalTokens := float64(rowsPerRank * T * rt.Mesh.DP)

	for step := 1; step <= steps; step++ {
		if err := loader.Next(in, tg); err != nil {
			return err
		}
		m.Params.ZeroGrad()
		sum, _, err := m.ForwardActs(ctx, acts, in, nil, tg, rowsPerRank, T)
		if err != nil {
			return err
		}
		// d(mean loss over the global batch)/dlogit: scale by 1/global tokens
		if err := m.BackwardActs(ctx, acts, nil, float32(1/globalTokens)); err != nil {
			return err
		}
		// Sum gradients (and the loss) over the data-parallel group.
		if err := rt.DP.AllReduce(ctx, collective.F32(m.Params.Grad), collective.Sum); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		loss := []float32{float32(sum)}
		if err := rt.DP.AllReduce(ctx, collective.F32(loss), collective.Sum); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		opt.Update(m.Params.Data, m.Params.Grad, 3e-3)
		if rt.Rank == 0 && (step%10 == 0 || step == 1) {
			fmt.Printf("step %3d  loss %.4f\n", step, float64(loss[0])/globalTokens)
		}
	}
	return nil
}
