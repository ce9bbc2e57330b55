// Command strand trains transformer language models on one machine or many.
//
// Each subcommand is a thin layer over a package API; see `strand help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/strand-ml/strand/launcher"
)

// command is one subcommand. Name may have two words ("bench collective").
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists every subcommand. Add one line per subcommand; the
// implementation lives in its own file (cmd_NAME.go).
func commands() []command {
	return []command{
		{"version", "print the version", runVersion},
		{"check", "smoke-test a job: a verified all-reduce and barrier on every group", runCheck},
		{"status", "show a running job's ranks, mesh and health (--coordinator ADDR)", runStatus},
		{"train", "train a model (one process, or --nproc N local processes)", runTrain},
		{"eval", "mean loss and perplexity of a checkpoint on a data file", runEval},
		{"generate", "generate text from a checkpoint with a KV cache (greedy or sampled), streamed", runGenerate},
		{"ckpt inspect", "print a checkpoint's layout, step, tensors and sizes", runCkptInspect},
		{"ckpt reshard", "rewrite a checkpoint for another --tp/--pp layout", runCkptReshard},
		{"ckpt export", "export a checkpoint as a Hugging Face GPT-2 model directory", runCkptExport},
		{"schedule", "print and draw a pipeline schedule (gpipe, 1f1b)", runSchedule},
		{"tokenizer train", "learn a byte-level BPE tokenizer from text", runTokenizerTrain},
		{"tokenize", "encode a text file into an llm.c token shard", runTokenize},
		{"sft", "supervised fine-tuning on prompt/response or chat JSONL (response tokens only, packed)", runSFT},
		{"dpo", "direct preference optimization on prompt/chosen/rejected JSONL against a frozen reference", runDPO},
		{"rm train", "train a reward model (scalar head, Bradley-Terry) on prompt/chosen/rejected JSONL", runRMTrain},
		{"rm score", "score preference pairs with a reward model; pairwise accuracy", runRMScore},
		{"ppo", "RLHF with PPO against a reward model on prompts (one process)", runPPO},
		{"lora merge", "fold LoRA adapters (sft/dpo --lora-rank) into their base checkpoint", runLoRAMerge},
		{"eval choice", "multiple-choice accuracy by per-choice log-likelihood (HellaSwag-style JSONL)", runEvalChoice},
		{"bench collective", "measure collectives over N local processes (nccl-tests style table)", runBenchCollective},
	}
}

const version = "0.1.0-dev"

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	_, err := fmt.Fprintln(stdout, "strand", version)
	return err
}

// usageError marks errors caused by bad command-line input (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, unwatch := launcher.WatchLauncher(ctx) // a worker whose launcher dies leaves saying so
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	unwatch()
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stdout, cmds)
		return 0
	}
	cmd, rest, ok := lookup(cmds, args)
	if !ok {
		fmt.Fprintf(stderr, "strand: unknown command %q (see 'strand help')\n", strings.Join(args[:min(2, len(args))], " "))
		return 2
	}
	err := cmd.run(ctx, rest, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stderr, "strand %s: %v\n", cmd.name, err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	// A launched job exits like its first failed worker (for example 137
	// when a worker was killed), as torchrun does.
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) && coded.ExitCode() > 1 {
		return coded.ExitCode()
	}
	return 1
}

func lookup(cmds []command, args []string) (command, []string, bool) {
	if len(args) >= 2 {
		two := args[0] + " " + args[1]
		for _, c := range cmds {
			if c.name == two {
				return c, args[2:], true
			}
		}
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c, args[1:], true
		}
	}
	return command{}, nil, false
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "strand: distributed training for transformer language models")
	fmt.Fprintln(w, "\nUsage: strand COMMAND [flags]   (strand COMMAND -h for flags)")
	fmt.Fprintln(w, "\nCommands:")
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
	}
}

// newFlags returns a FlagSet for a subcommand that reports errors instead of
// exiting, so run can map them to exit code 2.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("strand "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns flag errors and stray arguments into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
