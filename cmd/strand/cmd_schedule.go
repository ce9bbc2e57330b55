package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/strand-ml/strand/parallel/pipeline"
)

// runSchedule prints a pipeline schedule's action table, its theoretical
// bubble and peak in-flight activations per stage, runs it on the cost
// model and draws the timeline.
func runSchedule(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("schedule", stderr)
	pp := fs.Int("pp", 4, "pipeline stages")
	micro := fs.Int("microbatches", 8, "micro-batches per step")
	name := fs.String("schedule", pipeline.OneFOneB, "schedule: "+strings.Join(pipeline.Names, ", "))
	virtual := fs.Int("virtual-stages", 1, "model chunks per stage (interleaved)")
	var c pipeline.Costs
	fs.Float64Var(&c.F, "cost-f", 1, "cost model: a stage's forward time per micro-batch")
	fs.Float64Var(&c.B, "cost-b", 1, "cost model: a stage's input-gradient time per micro-batch")
	fs.Float64Var(&c.W, "cost-w", 1, "cost model: a stage's weight-gradient time per micro-batch (a fused backward takes cost-b + cost-w)")
	fs.Float64Var(&c.Send, "send", 0, "cost model: latency of one activation or gradient transfer")
	out := fs.String("png", "schedule.png", "picture of the timeline on the cost model (empty: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return usageError{err.Error()}
	}
	s, err := pipeline.Generate(pipeline.Spec{Name: *name, Stages: *pp, Micro: *micro, Virtual: *virtual})
	if err != nil {
		return usageError{err.Error()}
	}
	sim, err := s.Simulate(c)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, s.Table())
	unit := "micro-batch"
	if s.Chunks() > 1 {
		unit = fmt.Sprintf("chunk (1/%d of a stage's layers)", s.Chunks())
	}
	fmt.Fprintf(stdout, "peak in-flight activations per stage, in %s buffers:\n", unit)
	for st := 0; st < s.Stages; st++ {
		fmt.Fprintf(stdout, "  stage %d: %d", st, s.InFlight(st))
		if n := s.Needs(); n&pipeline.NeedsSplitBackward != 0 {
			fmt.Fprintf(stdout, " (at most %d before their input gradient)", s.AwaitingInputGrad(st))
		}
		fmt.Fprintf(stdout, ", idle %.1f%% of the step between its first and last compute\n", 100*sim.WindowIdle(st))
	}
	fmt.Fprintf(stdout, "cost model F=%g B=%g W=%g send=%g: makespan %.2f, simulated bubble %.1f%% (theory %.1f%%)\n",
		c.F, c.B, c.W, c.Send, sim.Makespan, 100*sim.Bubble(), 100*s.TheoreticalBubble())
	if n := s.Needs(); n != 0 {
		fmt.Fprintf(stdout, "needs an executor with %s\n", n)
	}
	if *out == "" {
		return nil
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := s.WritePNG(f, c); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}
