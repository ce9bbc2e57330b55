// Command pipeline_loop is a custom training loop over a data x pipeline
// parallel mesh, written only against strand's public packages: it joins a
// job, builds the pipelined trainer of its stage (micro-batches run by the
// 1F1B or GPipe schedule), feeds it a data source of its own and drives
// the steps itself: its own stopping rule, progress reported to the
// coordinator (strand status, /metrics), a checkpoint strand generate loads.
//
// A local job of 4 processes, 2-way data parallel x 2 pipeline stages:
//
//	go run ./examples/pipeline_loop -launch 4 -pp 2 -micro 4
//
// The launcher re-executes the running binary (go run's or go build's).
// Under Slurm or torchrun-style launchers, start it directly.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/worker"
)

type config struct {
	launch, pp, micro, steps int
	schedule, out            string
	target                   float64
}

func main() {
	var c config
	flag.IntVar(&c.launch, "launch", 0, "start a local job of N worker processes running this program")
	flag.IntVar(&c.pp, "pp", 2, "pipeline stages (the data-parallel degree is the world size / pp)")
	flag.IntVar(&c.micro, "micro", 4, "micro-batches per step and data-parallel rank")
	flag.IntVar(&c.steps, "steps", 40, "optimizer steps at most")
	flag.StringVar(&c.schedule, "schedule", "1f1b", "pipeline schedule: 1f1b or gpipe")
	flag.Float64Var(&c.target, "target", 0, "stop once the loss is below this (0: run every step)")
	flag.StringVar(&c.out, "out", "", "write the final checkpoint under this run directory")
	flag.Parse()
	ctx := context.Background()
	var err error
	if flag.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", flag.Args())
	} else if c.launch > 0 && !worker.InJob() {
		// Start c.launch copies of this program as one job (an embedded
		// coordinator, rank-prefixed output, teardown when a rank fails).
		var m mesh.Mesh
		if m, err = mesh.ForWorld(c.launch, 0, 1, c.pp); err == nil {
			err = launcher.Local(ctx, launcher.LocalConfig{NProc: c.launch, Mesh: m, Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr})
		}
	} else {
		err = run(ctx, c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipeline_loop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	rt, err := worker.Join(ctx, worker.Options{PP: c.pp})
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(context.Background(), time.Minute) // Leave waits for every rank
	defer cancel()
	return rt.Leave(lctx, train(rt, c))
}

func train(rt *worker.Runtime, c config) error {
	ctx := rt.Context() // cancelled when any rank fails
	cfg, err := model.Preset("tiny")
	if err != nil {
		return err
	}
	const batch, seq, seed = 16, 32, 1 // global batch: sequences per step
	opts := trainer.Options{Model: cfg, Batch: batch, Seq: seq, Micro: c.micro, Schedule: c.schedule,
		Steps: c.steps, LR: 3e-3, Warmup: 5, MinLRFrac: 0.1, GradClip: 1, AdamW: optim.DefaultAdamW(), Seed: seed, Threads: 1}
	// This rank's DP and PP groups, and the group of the first and last
	// stages that sums the tied embedding's gradient.
	comms := &trainer.Comms{Mesh: rt.Mesh, Coord: rt.Coord, DP: rt.DP, TP: rt.TP, PP: rt.PP}
	if comms.Embed, err = rt.TiedEmbedding(); err != nil {
		return err
	}
	t, err := trainer.New(opts, nil, comms)
	if err != nil {
		return err
	}
	defer t.Close()
	t.Source = &sequences{dp: rt.Coord.DP, rows: opts.RowsPerRank(rt.Mesh), seq: seq}
	for t.Step < c.steps {
		st, err := t.TrainStep(ctx)
		if err != nil {
			return err
		}
		rt.Report(st.Step, map[string]float64{"loss": st.Loss, "tokens_per_s": st.TokensPS})
		if rt.Rank == 0 && (st.Step == 1 || st.Step%10 == 0 || st.Loss < c.target) {
			fmt.Printf("step %3d  loss %.4f  %.0f tokens/s\n", st.Step, st.Loss, st.TokensPS)
		}
		// Every rank holds the job's loss, so every rank stops together.
		if st.Loss < c.target {
			break
		}
	}
	if c.out == "" {
		return nil
	}
	dir, err := t.Save(ctx, c.out, 1, rt.Rank, rt.Barrier, trainer.State{Seed: seed})
	if err == nil && rt.Rank == 0 {
		fmt.Println("checkpoint", dir)
	}
	return err
}

// sequences is a trainer.Batches of its own: each row continues an
// arithmetic sequence mod 256 from a random start and stride (after two
// tokens the next is certain). A data-parallel rank draws its rows from a
// generator seeded by its rank and the batch number, so every stage of its
// pipeline reads the same rows.
type sequences struct {
	dp, rows, seq int
	batch         uint64
}

func (s *sequences) Next(inputs, targets []int32) error {
	if len(inputs) != s.rows*s.seq || len(targets) != len(inputs) {
		return fmt.Errorf("sequences: buffers of %d and %d tokens, want %d x %d", len(inputs), len(targets), s.rows, s.seq)
	}
	s.batch++
	r := rand.New(rand.NewPCG(uint64(s.dp), s.batch))
	for row := range s.rows {
		x, stride := r.IntN(256), 1+r.IntN(7)
		for i := range s.seq {
			inputs[row*s.seq+i] = int32(x)
			x = (x + stride) % 256
			targets[row*s.seq+i] = int32(x)
		}
	}
	return nil
}
