package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/strand-ml/strand/parallel/pipeline"
)

// runSchedule prints a pipeline schedule's action table and draws it.
func runSchedule(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("schedule", stderr)
	pp := fs.Int("pp", 4, "pipeline stages")
	micro := fs.Int("microbatches", 8, "micro-batches per step")
	name := fs.String("schedule", pipeline.OneFOneB, "gpipe or 1f1b")
	out := fs.String("png", "schedule.png", "picture of the timeline (empty: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := pipeline.New(*name, *pp, *micro)
	if err != nil {
		return usageError{err.Error()}
	}
	fmt.Fprint(stdout, s.Table())
	fmt.Fprintf(stdout, "simulated bubble (backward = 2x forward): %.1f%%\n", 100*s.SimulatedBubble(1, 2))
	if *out == "" {
		return nil
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := s.WritePNG(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}
