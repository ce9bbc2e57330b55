// Command pipeline tabulates every pipeline schedule on the cost model
// (parallel/pipeline.Simulate): simulated, not measured. For each number of
// stages p and micro-batches m it prints, per schedule, the theoretical
// bubble (the published formula), the simulated bubble and step time
// (makespan, in units of one stage's forward of one micro-batch), the step
// time against 1F1B's in the same row group, peak activations per stage
// and the largest idle a single stage sees between its first and last
// compute:
//
//	go run ./bench/pipeline                                   # the paper's T_F = T_B = T_W, free transfers
//	go run ./bench/pipeline -f 1 -b 1.2 -w 0.8 -send 0.1      # other costs
//
// It prints a Markdown table for bench/RESULTS.md.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/strand-ml/strand/parallel/pipeline"
)

func main() {
	stages := flag.String("pp", "2,4,8", "comma-separated stage counts")
	micro := flag.String("microbatches", "4,8,16", "comma-separated micro-batch counts")
	virtual := flag.String("virtual", "2,4", "comma-separated chunk counts for interleaved")
	var c pipeline.Costs
	flag.Float64Var(&c.F, "f", 1, "a stage's forward time per micro-batch")
	flag.Float64Var(&c.B, "b", 1, "a stage's input-gradient time per micro-batch")
	flag.Float64Var(&c.W, "w", 1, "a stage's weight-gradient time per micro-batch")
	flag.Float64Var(&c.Send, "send", 0, "latency of one transfer")
	flag.Parse()
	ps, err1 := ints(*stages)
	ms, err2 := ints(*micro)
	vs, err3 := ints(*virtual)
	for _, err := range []error{err1, err2, err3, c.Validate()} {
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench pipeline:", err)
			os.Exit(2)
		}
	}
	if err := table(os.Stdout, ps, ms, vs, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench pipeline:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func table(w io.Writer, ps, ms, vs []int, c pipeline.Costs) error {
	fmt.Fprintf(w, "Simulated on the cost model F=%g B=%g W=%g send=%g (a fused backward costs B+W; a chunk 1/V of its stage):\n\n", c.F, c.B, c.W, c.Send)
	fmt.Fprintln(w, "| p | m | schedule | theory bubble | simulated bubble | step (units) | step / 1F1B | bubble / 1F1B | peak activations per stage (stage-equivalents) | max idle inside a stage's window |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|")
	for _, p := range ps {
		for _, m := range ms {
			specs := []pipeline.Spec{{Name: pipeline.GPipe}, {Name: pipeline.OneFOneB}}
			for _, v := range vs {
				specs = append(specs, pipeline.Spec{Name: pipeline.Interleaved, Virtual: v})
			}
			specs = append(specs, pipeline.Spec{Name: pipeline.ZBH1}, pipeline.Spec{Name: pipeline.ZBH2})
			ref, err := simulate(pipeline.Spec{Name: pipeline.OneFOneB, Stages: p, Micro: m}, c)
			if err != nil {
				return err
			}
			for _, spec := range specs {
				spec.Stages, spec.Micro = p, m
				label := spec.Name
				if spec.Name == pipeline.Interleaved {
					label = fmt.Sprintf("%s V=%d", spec.Name, spec.Virtual)
				}
				s, err := pipeline.Generate(spec)
				if err != nil {
					fmt.Fprintf(w, "| %d | %d | %s | n/a: m is not a multiple of p | | | | | | |\n", p, m, label)
					continue
				}
				sim, err := s.Simulate(c)
				if err != nil {
					return err
				}
				var peaks, beforeB []string
				idle := 0.0
				for st := 0; st < p; st++ {
					peaks = append(peaks, strconv.FormatFloat(float64(s.InFlight(st))/float64(s.Chunks()), 'g', 3, 64))
					beforeB = append(beforeB, strconv.Itoa(s.AwaitingInputGrad(st)))
					idle = max(idle, sim.WindowIdle(st))
				}
				ratio, bratio := fmt.Sprintf("%.3f", sim.Makespan/ref.Makespan), ""
				if ref.Bubble() > 0 {
					bratio = fmt.Sprintf("%.3f", sim.Bubble()/ref.Bubble())
				}
				peak := strings.Join(peaks, " ")
				if s.Needs()&pipeline.NeedsSplitBackward != 0 {
					peak += " (before B: " + strings.Join(beforeB, " ") + ")"
				}
				fmt.Fprintf(w, "| %d | %d | %s | %.1f%% | %.1f%% | %.2f | %s | %s | %s | %.1f%% |\n",
					p, m, label, 100*s.TheoreticalBubble(), 100*sim.Bubble(), sim.Makespan, ratio, bratio, peak, 100*idle)
			}
		}
	}
	return nil
}

func simulate(spec pipeline.Spec, c pipeline.Costs) (*pipeline.Sim, error) {
	s, err := pipeline.Generate(spec)
	if err != nil {
		return nil, err
	}
	return s.Simulate(c)
}
