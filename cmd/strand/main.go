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
	"runtime/debug"
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
		{"status", "show a running job's ranks, mesh and health (strand status RUN, or --coordinator ADDR)", runStatus},
		{"train", "train a model (one process, or --nproc N local processes)", runTrain},
		{"eval", "mean loss and perplexity of a checkpoint on a data file", runEval},
		{"generate", "generate text from a checkpoint with a KV cache (greedy or sampled), streamed", runGenerate},
		{"ckpt inspect", "print a checkpoint's layout, step, tensors and sizes", runCkptInspect},
		{"ckpt reshard", "rewrite a checkpoint for another --tp/--pp layout", runCkptReshard},
		{"ckpt export", "export a checkpoint as a Hugging Face GPT-2 or Llama-family directory, or LoRA adapters as PEFT", runCkptExport},
		{"schedule", "print, draw and simulate a pipeline schedule (gpipe, 1f1b, interleaved, zb-h1, zb-h2)", runSchedule},
		{"tokenizer train", "learn a byte-level BPE tokenizer from text", runTokenizerTrain},
		{"tokenize", "encode a text file into an llm.c token shard", runTokenize},
		{"sft", "supervised fine-tuning on prompt/response or chat JSONL (response tokens only, packed)", runSFT},
		{"dpo", "direct preference optimization on prompt/chosen/rejected JSONL against a frozen reference", runDPO},
		{"rm train", "train a reward model (scalar head, Bradley-Terry) on prompt/chosen/rejected JSONL", runRMTrain},
		{"rm score", "score preference pairs with a reward model; pairwise accuracy", runRMScore},
		{"ppo", "RLHF with PPO against a reward model on prompts, on any DP x TP x PP mesh", runPPO},
		{"lora merge", "fold LoRA adapters (sft/dpo --lora-rank) into their base checkpoint", runLoRAMerge},
		{"eval choice", "multiple-choice accuracy by per-choice log-likelihood (HellaSwag-style JSONL)", runEvalChoice},
		{"bench collective", "measure collectives over N local processes (nccl-tests style table)", runBenchCollective},
	}
}

const version = "0.1.0-dev"

// runVersion prints the module version and, when the binary was built
// from a git checkout, its commit (from the Go build information).
func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	_, err := fmt.Fprintln(stdout, versionLine())
	return err
}

func versionLine() string {
	line := "strand " + version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return line
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		line += " (module " + v + ")"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		line += " commit " + rev[:min(12, len(rev))] + modified
	}
	return line + " " + bi.GoVersion
}

// usageError marks errors caused by bad command-line input (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// quietExit ends the process with code and prints nothing: the outcome
// was already reported (a worker whose launcher reports the job's end).
type quietExit struct {
	code int
	err  error
}

func (e quietExit) Error() string { return e.err.Error() }
func (e quietExit) Unwrap() error { return e.err }

func main() {
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first Ctrl-C asks for a clean stop (a training run
		// checkpoints first); restoring the default makes a second one
		// end the process at once.
		<-sigCtx.Done()
		stop()
	}()
	ctx, unwatch := launcher.WatchLauncher(sigCtx) // a worker whose launcher dies leaves saying so
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	unwatch()
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	switch {
	case len(args) == 0:
		printUsage(stderr, cmds)
		return 2
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		printUsage(stdout, cmds)
		return 0
	case args[0] == "--version" || args[0] == "-version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	cmd, rest, ok := lookup(cmds, args)
	if !ok {
		fmt.Fprintf(stderr, "strand: unknown command %q\n\n", strings.Join(args[:min(2, len(args))], " "))
		printUsage(stderr, cmds)
		return 2
	}
	if logFormatJSON(rest) {
		jout, jerr := &jsonLines{w: stdout, level: "info"}, &jsonLines{w: stderr, level: "info"}
		defer jout.Close()
		defer jerr.Close()
		stdout, stderr = jout, jerr
	}
	err := cmd.run(ctx, rest, stdout, stderr)
	var quiet quietExit
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &quiet):
		return quiet.code
	}
	if j, ok := stderr.(*jsonLines); ok {
		j.level = "error"
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
