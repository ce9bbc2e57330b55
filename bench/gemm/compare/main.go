// Command compare measures strand's GEMM against OpenBLAS (through numpy)
// and torch 1.13 on the same machine in the same run, and prints a markdown
// table of GFLOP/s and ratios.
//
// The machine is shared and noisy, so absolute figures drift by tens of
// percent between runs. To compare fairly, each (shape, threads) row is
// measured in rounds: in each round strand runs, then the Python anchor
// worker (anchor.py) runs the same shape, one right after the other; the
// table reports the median over rounds of each rate and of the per-round
// ratio.
//
// Usage (from the repository root; run.sh sets the OpenBLAS environment):
//
//	go run ./bench/gemm/compare [-threads 1,2] [-rounds 5] [-min 0.05] [-settle 50ms] [-filter REGEXP] [-dtype f32|bf16]
//
// With -dtype bf16 strand's GemmBF16 (bf16 inputs, float32 output) is
// compared with torch.mm on bfloat16 tensors (oneDNN), the only bf16 anchor.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strand-ml/strand/bench/gemm"
	"github.com/strand-ml/strand/gemm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

type options struct {
	threads []int
	rounds  int
	minSecs float64
	settle  time.Duration // idle before each measurement (see -settle)
	filter  *regexp.Regexp
	python  string
	script  string
	bf16    bool // strand GemmBF16 vs torch bf16 matmul
}

func parse(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	threads := fs.String("threads", "1,2", "comma-separated thread counts")
	rounds := fs.Int("rounds", 5, "interleaved rounds per row (median reported)")
	minSecs := fs.Float64("min", 0.05, "minimum seconds per measurement")
	settle := fs.Duration("settle", 50*time.Millisecond, "idle time before each measurement, so the other side's spinning worker threads have gone to sleep")
	filter := fs.String("filter", "", "only shapes whose description matches this regexp")
	python := fs.String("python", "/usr/bin/python3", "Python with numpy and torch")
	script := fs.String("script", "bench/gemm/anchor.py", "anchor worker script")
	dtype := fs.String("dtype", "f32", "f32 (vs OpenBLAS and torch) or bf16 (GemmBF16 vs torch bf16)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{rounds: *rounds, minSecs: *minSecs, settle: *settle, python: *python, script: *script, bf16: *dtype == "bf16"}
	if *dtype != "f32" && *dtype != "bf16" {
		return o, fmt.Errorf("-dtype %q: want f32 or bf16", *dtype)
	}
	for _, f := range strings.Split(*threads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("bad -threads entry %q", f)
		}
		o.threads = append(o.threads, n)
	}
	if o.rounds < 1 || o.minSecs <= 0 {
		return o, errors.New("-rounds and -min must be positive")
	}
	re, err := regexp.Compile(*filter)
	if err != nil {
		return o, fmt.Errorf("-filter: %w", err)
	}
	o.filter = re
	return o, nil
}

// anchor is one running anchor.py worker at a fixed thread count.
type anchor struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

type anchorResult struct {
	Numpy    float64 `json:"numpy"`
	NumpyCPU float64 `json:"numpy_cpu"` // per CPU-second of the calling thread
	Torch    float64 `json:"torch"`
	TorchCPU float64 `json:"torch_cpu"`
	Core     string  `json:"core"`
	Threads  int     `json:"threads"`
}

func startAnchor(ctx context.Context, o options, threads int) (*anchor, error) {
	cmd := exec.CommandContext(ctx, o.python, o.script)
	n := strconv.Itoa(threads)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS="+n, "OPENBLAS_NUM_THREADS="+n)
	if os.Getenv("OPENBLAS_CORETYPE") == "" {
		cmd.Env = append(cmd.Env, "OPENBLAS_CORETYPE=SkylakeX")
	}
	if os.Getenv("LD_LIBRARY_PATH") == "" {
		cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp")
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start anchor %s %s: %w", o.python, o.script, err)
	}
	return &anchor{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

func (a *anchor) measure(s gemmbench.Shape, minSecs float64, bf16 bool) (anchorResult, error) {
	dtype := "f32"
	if bf16 {
		dtype = "bf16"
	}
	req, _ := json.Marshal(map[string]any{"tA": s.TA, "tB": s.TB, "m": s.M, "n": s.N, "k": s.K, "min_seconds": minSecs, "dtype": dtype})
	if _, err := fmt.Fprintf(a.in, "%s\n", req); err != nil {
		return anchorResult{}, fmt.Errorf("anchor request %v: %w", s, err)
	}
	if !a.out.Scan() {
		return anchorResult{}, fmt.Errorf("anchor died on %v: %v", s, a.out.Err())
	}
	var r anchorResult
	if err := json.Unmarshal(a.out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("anchor reply %q: %w", a.out.Text(), err)
	}
	return r, nil
}

func (a *anchor) close() {
	a.in.Close()
	a.cmd.Wait()
}

// strandRate times e on s like anchor.py does: one warm-up call, then calls
// until minSecs have passed and at least 3 ran. It returns GFLOP/s by wall
// clock and per CPU-second of the calling OS thread; the latter is what a
// 1-thread engine (which computes on the calling goroutine) is worth on a
// loaded machine, where wall time includes waiting for a CPU.
func strandRate(s gemmbench.Shape, op func(), minSecs float64) (wall, perCPU float64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	op()
	start, cpu0, iters := time.Now(), threadCPU(), 0
	for {
		op()
		iters++
		if el := time.Since(start).Seconds(); el >= minSecs && iters >= 3 {
			cpu := max(threadCPU()-cpu0, 1e-9)
			return s.Flops() * float64(iters) / el / 1e9, s.Flops() * float64(iters) / cpu / 1e9
		}
	}
}

func median(x []float64) float64 {
	y := slices.Clone(x)
	slices.Sort(y)
	if len(y)%2 == 1 {
		return y[len(y)/2]
	}
	return (y[len(y)/2-1] + y[len(y)/2]) / 2
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	all, err := gemmbench.All()
	if err != nil {
		return err
	}
	var shapes []gemmbench.Shape
	for _, s := range all {
		if o.filter.MatchString(s.String()) {
			shapes = append(shapes, s)
		}
	}
	anchors := map[int]*anchor{}
	for _, t := range o.threads {
		a, err := startAnchor(ctx, o, t)
		if err != nil {
			return err
		}
		defer a.close()
		anchors[t] = a
	}
	core := "?"
	kernel, ref := gemm.New(1).KernelName(), "OpenBLAS (numpy)"
	if o.bf16 {
		kernel, ref = gemm.New(1).BF16KernelName()+" (GemmBF16, bf16 in, float32 out)", "torch bf16"
	}
	fmt.Fprintf(stdout, "Run %s on %s (%d CPUs), Go %s, strand kernel %s; load average at start %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpuModel(), runtime.NumCPU(), runtime.Version(), kernel, loadAvg())
	var rows []string
	for _, s := range shapes {
		x, y, z, lda, ldb := gemmbench.Operands(s, 1)
		x16, y16 := toBF16(x), toBF16(y)
		for _, t := range o.threads {
			if err := ctx.Err(); err != nil {
				return err
			}
			e := gemm.New(t)
			op := func() { e.Sgemm(s.TA, s.TB, s.M, s.N, s.K, 1, x, lda, y, ldb, 0, z, s.N) }
			if o.bf16 {
				op = func() { e.GemmBF16(s.TA, s.TB, s.M, s.N, s.K, 1, x16, lda, y16, ldb, 0, z, s.N) }
			}
			var st, np, th, rnp, stc, npc []float64
			for r := 0; r < o.rounds; r++ {
				// Idle before each side: after a measurement its worker
				// threads spin before they sleep (OpenBLAS's OpenMP
				// threads by default for milliseconds, strand's for
				// 0.3 ms), and a 2-thread measurement started meanwhile
				// shares a core with them for its first milliseconds.
				time.Sleep(o.settle)
				g, gc := strandRate(s, op, o.minSecs)
				time.Sleep(o.settle)
				a, err := anchors[t].measure(s, o.minSecs, o.bf16)
				if err != nil {
					return err
				}
				core = a.Core
				if o.bf16 {
					// The reference is torch's bf16 matmul; no numpy column.
					a.Numpy, a.NumpyCPU = a.Torch, a.TorchCPU
				}
				st, np, th = append(st, g), append(np, a.Numpy), append(th, a.Torch)
				rnp = append(rnp, g/a.Numpy)
				stc, npc = append(stc, gc), append(npc, a.NumpyCPU)
			}
			cpuCol := "-"
			if t == 1 {
				cpuCol = fmt.Sprintf("%.0f / %.0f = **%.2f**", median(stc), median(npc), median(stc)/median(npc))
			}
			row := fmt.Sprintf("| %s | %s | %dx%dx%d | %d | %.0f | %.0f | %.0f | %.2f | %.0f / %.0f = **%.2f** | %s |",
				s.Name, opName(s), s.M, s.N, s.K, t, median(st), median(np), median(th), median(rnp),
				slices.Max(st), slices.Max(np), slices.Max(st)/slices.Max(np), cpuCol)
			fmt.Fprintln(stderr, row)
			rows = append(rows, row)
		}
	}
	fmt.Fprintf(stdout, "OpenBLAS core: %s (numpy calls cblas_sgemm directly; torch.mm goes through ATen to the same library).\n", core)
	fmt.Fprintf(stdout, "GFLOP/s by wall clock, medians over %d interleaved rounds of >= %.2f s each; \"median ratio\" is the median of per-round ratios. ", o.rounds, o.minSecs)
	fmt.Fprintln(stdout, "\"best\" compares the best round of each (the least disturbed by other load). \"per CPU-s\" (1 thread only) divides by the CPU time of the computing thread instead of wall time, which discounts time spent waiting for a CPU.")
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "| shape | op | m x n x k | threads | strand | %s | torch | median ratio | best: strand / ref | per CPU-s: strand / ref |\n", ref)
	fmt.Fprintln(stdout, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintln(stdout, r)
	}
	return nil
}

// toBF16 truncates x to bf16 bit patterns (benchmark inputs only).
func toBF16(x []float32) []uint16 {
	h := make([]uint16, len(x))
	for i, v := range x {
		h[i] = uint16(math.Float32bits(v) >> 16)
	}
	return h
}

func opName(s gemmbench.Shape) string {
	switch {
	case s.TA && s.TB:
		return "At*Bt"
	case s.TA:
		return "At*B"
	case s.TB:
		return "A*Bt"
	}
	return "A*B"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
