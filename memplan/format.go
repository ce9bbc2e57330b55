package memplan

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
)

// Bytes formats n in binary units ("1.5 GiB").
func Bytes(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}

// ParseBytes reads a size as --max-mem-per-rank takes it: "12GiB",
// "800MB", "1.5 GiB", or a plain number of bytes.
func ParseBytes(s string) (int64, error) {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("memory size %q: want a number of bytes such as 12GiB or 800MB", s)
	}
	if n == 0 || n > 1<<62 {
		return 0, fmt.Errorf("memory size %q must be positive", s)
	}
	return int64(n), nil
}

// Describe is a one-line description of what c plans.
func (c Config) Describe() string {
	zero := fmt.Sprintf("ZeRO-%d", c.Zero)
	if c.Zero >= 2 {
		g := c.ShardGroup
		if g == 0 {
			g = c.Mesh.DP
		}
		zero += fmt.Sprintf(" over %d", g)
	}
	if c.Zero == 3 && !c.ReshardAfterForward {
		zero += ", no reshard after forward"
	}
	rec, prec := c.Recompute, c.Precision
	if rec == "" {
		rec = "none"
	}
	if prec == "" {
		prec = "fp32"
	}
	micro := max(c.Micro, 1)
	rows := 0
	if c.Mesh.DP > 0 {
		rows = c.Batch / c.Mesh.DP / micro
	}
	mb := fmt.Sprintf("%d micro-batches of %d", micro, rows)
	if micro == 1 {
		mb = fmt.Sprintf("%d rows", rows)
	}
	return fmt.Sprintf("mesh dp%d x tp%d x pp%d, %s, recompute %s, %s, batch %d x %d (%s per rank)",
		c.Mesh.DP, c.Mesh.TP, c.Mesh.PP, zero, rec, prec, c.Batch, c.Seq, mb)
}

// Write prints the plan as a table: one column per pipeline stage (its
// ranks' memory), one row per category, then the largest rank.
func Write(w io.Writer, c Config, stages []Stage) error {
	fmt.Fprintf(w, "memory plan per rank: %s\n", c.Describe())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "\t"
	for _, s := range stages {
		head += fmt.Sprintf("stage %d (blocks %d-%d)\t", s.Stage, s.Blocks[0], s.Blocks[1]-1)
	}
	fmt.Fprintln(tw, head)
	row := func(name string, get func(Breakdown) int64) {
		line := name + "\t"
		for _, s := range stages {
			line += Bytes(get(s.Breakdown)) + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	row("parameters", func(b Breakdown) int64 { return b.Params })
	row("gradients", func(b Breakdown) int64 { return b.Grads })
	row("optimizer", func(b Breakdown) int64 { return b.Optimizer })
	row("activations", func(b Breakdown) int64 { return b.Activations })
	row("communication", func(b Breakdown) int64 { return b.Comm })
	row("other", func(b Breakdown) int64 { return b.Other })
	row("total", func(b Breakdown) int64 { return b.Total })
	if err := tw.Flush(); err != nil {
		return err
	}
	top := 0
	for i, s := range stages {
		if s.Total > stages[top].Total {
			top = i
		}
	}
	ranks := c.Mesh.DP * c.Mesh.TP * c.Mesh.PP
	_, err := fmt.Fprintf(w, "largest rank: %s (stage %d); job: %s over %d ranks\n", Bytes(stages[top].Total), top, Bytes(jobTotal(c, stages)), ranks)
	return err
}

// jobTotal is the whole job's memory: every stage's rank times the DP x TP
// ranks that hold it.
func jobTotal(c Config, stages []Stage) int64 {
	var n int64
	for _, s := range stages {
		n += s.Total * int64(c.Mesh.DP*c.Mesh.TP)
	}
	return n
}

// CheckLimit refuses a plan whose largest rank exceeds limit bytes, naming
// the predicted total, the limit, the biggest category and what would
// shrink it.
func CheckLimit(c Config, stages []Stage, limit int64) error {
	if limit <= 0 {
		return nil
	}
	top := 0
	for i, s := range stages {
		if s.Total > stages[top].Total {
			top = i
		}
	}
	b := stages[top].Breakdown
	if b.Total <= limit {
		return nil
	}
	big := b.Categories()[0]
	for _, cat := range b.Categories() {
		if cat.Bytes > big.Bytes {
			big = cat
		}
	}
	where := ""
	if len(stages) > 1 {
		where = fmt.Sprintf(" (pipeline stage %d)", top)
	}
	return fmt.Errorf("the plan needs %s per rank%s, over --max-mem-per-rank %s; the biggest part is %s at %s: %s",
		Bytes(b.Total), where, Bytes(limit), big.Name, Bytes(big.Bytes), advice(c, big.Name))
}

// advice suggests the flags that shrink category name.
func advice(c Config, name string) string {
	var s []string
	switch name {
	case "activations":
		if c.Recompute != "full" {
			s = append(s, "--recompute full (or selective)")
		}
		s = append(s, "more --microbatches (smaller micro-batches)", "a shorter --seq", "more --tp")
	case "optimizer":
		if c.Zero < 1 {
			s = append(s, "--zero 1 (shards AdamW's moments over the data-parallel ranks)")
		}
		s = append(s, "more data-parallel ranks under ZeRO", "more --pp or --tp")
	case "grads":
		if c.Zero < 2 {
			s = append(s, "--zero 2 (shards gradients)")
		}
		s = append(s, "more --pp or --tp")
	case "params":
		if c.Zero < 3 {
			s = append(s, "--zero 3 (shards parameters)")
		}
		s = append(s, "more --pp or --tp")
	case "comm":
		s = append(s, "smaller --bucket-mb", "more --microbatches")
	default:
		s = append(s, "fewer processes per host (the runtime and data are per process)")
	}
	return "try " + strings.Join(s, ", ")
}
