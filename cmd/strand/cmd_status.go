package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/strand-ml/strand/coordinator"
	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/launcher/jobenv"
)

// runStatus is `strand status RUN` or `strand status --coordinator ADDR`:
// the job's ranks, mesh and health as the coordinator sees them (a local
// job's coordinator and token are read from RUN/job.json). With --abort
// REASON it first fails the job, and every worker stops naming the reason.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: strand status RUN [flags]   (RUN: the job's run directory, --out)\n       strand status --coordinator HOST:PORT [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	run, args := splitDir(args)
	addr := fs.String("coordinator", "", "HOST:PORT of the coordinator")
	token := fs.String("token", "", "job token (default $"+jobenv.Token+")")
	ca := fs.String("ca", "", "CA certificate file, when the coordinator uses TLS")
	asJSON := fs.Bool("json", false, "print the raw status as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	abort := fs.String("abort", "", "abort the job with this reason (every worker stops and names it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(run) == 1 {
		if *addr != "" {
			return usageError{"give a run directory or --coordinator, not both"}
		}
		rec, err := readJobFile(run[0])
		if err != nil {
			return err
		}
		*addr = rec.Coordinator
		if *token == "" {
			*token = rec.Token
		}
	}
	if *addr == "" {
		*addr = os.Getenv(jobenv.Coordinator)
	}
	if *addr == "" {
		return usageError{"name the job: strand status RUN (its run directory) or --coordinator HOST:PORT"}
	}
	if *token == "" {
		*token = os.Getenv(jobenv.Token)
	}
	c, err := coordinator.Dial(coordinator.ClientConfig{Addr: *addr, Token: *token, CAFile: *ca})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *abort != "" {
		if _, err := c.RPC.Abort(ctx, &pb.AbortRequest{Rank: -1, Reason: *abort}); err != nil {
			return fmt.Errorf("abort: %s", status.Convert(err).Message())
		}
		fmt.Fprintf(stdout, "job aborted: %s\n", *abort)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(st)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	fmt.Fprintf(stdout, "job %s  state %s  mesh dp=%d tp=%d pp=%d  ranks %d/%d joined  up %s\n",
		st.JobId, coordinator.JobStateName(st.State), st.Mesh.GetDp(), st.Mesh.GetTp(), st.Mesh.GetPp(),
		st.Joined, st.World, time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second))
	if st.Reason != "" {
		fmt.Fprintf(stdout, "reason: %s\n", st.Reason)
	}
	return printRanks(stdout, st)
}

// printRanks prints one line per rank of the status.
func printRanks(stdout io.Writer, st *pb.StatusReply) error {
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tHOST\tPID\tDP\tTP\tPP\tSTATE\tSTEP\tSEEN\tMETRICS")
	for _, r := range st.Ranks {
		m := r.GetMember()
		rank := fmt.Sprint(m.GetRank())
		if m.GetRank() < 0 {
			rank = "-"
		}
		var ms []string
		keys := make([]string, 0, len(r.Metrics))
		for k := range r.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ms = append(ms, fmt.Sprintf("%s=%.4g", k, r.Metrics[k]))
		}
		state := r.State
		if r.Error != "" {
			state += ": " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%.1fs ago\t%s\n", rank, m.GetHost(), m.GetPid(),
			r.Dp, r.Tp, r.Pp, state, r.Step, r.LastSeenSeconds, strings.Join(ms, " "))
	}
	return tw.Flush()
}
