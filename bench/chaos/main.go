// Command chaos runs a 2-node training job (two network namespaces, each a
// "host" with 2 workers; a control link for the coordinator and a data link
// the transport is bound to with --bind) once without faults and once per
// fault, injecting the fault at a random step: kill -9 of a worker, SIGSTOP
// of a worker, a partition of both links, a partition of the data link
// only, garbage connections to every listening port, and a full disk (the
// run directory on a small tmpfs, filled up). Each faulted run has
// --max-restarts 1; the script heals the fault once the job has failed (the
// link comes back, the disk is freed), so the restart can take the whole
// mesh again. It prints one markdown table row per fault: time from the
// injection to the job's failure, the rank the coordinator named, the steps
// lost (the resume record), and whether every step's loss equals the
// uninterrupted run's bit for bit.
//
//	go build -o /tmp/strand ./cmd/strand
//	sudo go run ./bench/chaos -strand /tmp/strand -seed 1
//
// It needs root (namespaces, tmpfs) and iproute2; it removes both when done.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	nsA, nsB     = "strand-chaos-a", "strand-chaos-b"
	ctlA, ctlB   = "10.232.7.1", "10.232.7.2"
	dataA, dataB = "10.232.8.1", "10.232.8.2"
	vA, vB       = "chaosca", "chaoscb" // control link ends
	dA, dB       = "chaosda", "chaosdb" // data link ends
)

func main() {
	strand := flag.String("strand", "", "strand binary (default: build ./cmd/strand)")
	seed := flag.Uint64("seed", 1, "random seed for the injection steps and victims")
	steps := flag.Int("steps", 200, "training steps per run")
	only := flag.String("only", "", "comma-separated faults to run (default all)")
	work := flag.String("dir", "", "working directory (default a temporary one)")
	flag.Parse()
	if len(flag.Args()) > 0 && flag.Arg(0) == "garbage" { // helper mode, run inside a namespace
		garbage(flag.Args()[1:])
		return
	}
	if os.Geteuid() != 0 {
		fatal("chaos needs root (network namespaces, tmpfs)")
	}
	dir := *work
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "strand-chaos-"); err != nil {
			fatal(err.Error())
		}
		defer os.RemoveAll(dir)
	}
	if *strand == "" {
		*strand = filepath.Join(dir, "strand")
		if out, err := exec.Command("go", "build", "-o", *strand, "./cmd/strand").CombinedOutput(); err != nil {
			fatal(fmt.Sprintf("build: %v\n%s", err, out))
		}
	}
	cleanup := setupHosts()
	defer cleanup()
	rng := rand.New(rand.NewPCG(*seed, 7))
	c := &chaos{strand: *strand, dir: dir, steps: *steps, rng: rng, port: 29600}

	ref := c.run("reference", nil)
	if ref.exit0 != 0 || ref.exit1 != 0 {
		fatal(fmt.Sprintf("the uninterrupted run failed (%d, %d):\n%s", ref.exit0, ref.exit1, ref.log))
	}
	faults := []fault{kill9{}, sigstop{}, partition{data: false}, partition{data: true}, garbageFault{}, diskFull{}}
	fmt.Printf("\n| fault | injected at step | detected after | rank named | steps lost | final losses equal the uninterrupted run |\n")
	fmt.Printf("|---|---|---|---|---|---|\n")
	for _, f := range faults {
		if *only != "" && !strings.Contains(","+*only+",", ","+f.name()+",") {
			continue
		}
		r := c.run(f.name(), f)
		fmt.Println(r.row(ref))
	}
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "chaos:", msg)
	os.Exit(1)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// setupHosts builds the two namespaces and their two links.
func setupHosts() func() {
	cleanup := func() {
		_ = ip("netns", "del", nsA)
		_ = ip("netns", "del", nsB)
	}
	cleanup()
	for _, s := range [][]string{
		{"netns", "add", nsA}, {"netns", "add", nsB},
		{"link", "add", vA, "type", "veth", "peer", "name", vB},
		{"link", "add", dA, "type", "veth", "peer", "name", dB},
		{"link", "set", vA, "netns", nsA}, {"link", "set", vB, "netns", nsB},
		{"link", "set", dA, "netns", nsA}, {"link", "set", dB, "netns", nsB},
		{"-n", nsA, "addr", "add", ctlA + "/24", "dev", vA}, {"-n", nsB, "addr", "add", ctlB + "/24", "dev", vB},
		{"-n", nsA, "addr", "add", dataA + "/24", "dev", dA}, {"-n", nsB, "addr", "add", dataB + "/24", "dev", dB},
		{"-n", nsA, "link", "set", vA, "up"}, {"-n", nsB, "link", "set", vB, "up"},
		{"-n", nsA, "link", "set", dA, "up"}, {"-n", nsB, "link", "set", dB, "up"},
		{"-n", nsA, "link", "set", "lo", "up"}, {"-n", nsB, "link", "set", "lo", "up"},
	} {
		if err := ip(s...); err != nil {
			cleanup()
			fatal(err.Error())
		}
	}
	return cleanup
}

type chaos struct {
	strand string
	dir    string
	steps  int
	rng    *rand.Rand
	port   int
}

// node is one launcher (node 0 or 1) with its output, line by line with
// the time each line arrived.
type node struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []line
	done  chan struct{}
	code  int
}

type line struct {
	at   time.Time
	text string
}

func (n *node) text() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for _, l := range n.lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// first returns the first line matching re and when it arrived.
func (n *node) first(re *regexp.Regexp) (line, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.lines {
		if re.MatchString(l.text) {
			return l, true
		}
	}
	return line{}, false
}

func (c *chaos) startNode(rank int, run, coord string, extra []string) *node {
	ns, bind := nsA, dataA
	if rank == 1 {
		ns, bind = nsB, dataB
	}
	args := []string{"netns", "exec", ns, c.strand, "train", "--out", run, "--nnodes", "2", "--node-rank", strconv.Itoa(rank),
		"--coordinator", coord, "--nproc-per-node", "2", "--token", "chaos-token", "--bind", bind,
		"--model", "tiny", "--batch", "8", "--microbatches", "2", "--max-data-bytes", "200000", "--no-progress",
		"--threads", "1", "--steps", strconv.Itoa(c.steps), "--ckpt-every", "10", "--keep", "1", "--tp", "2",
		"--connect-timeout", "60s"}
	cmd := exec.Command("ip", append(args, extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	n := &node{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		fatal(err.Error())
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			n.mu.Lock()
			n.lines = append(n.lines, line{time.Now(), sc.Text()})
			n.mu.Unlock()
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			n.code = ee.ExitCode()
		}
		close(n.done)
	}()
	return n
}

func (n *node) wait(d time.Duration) int {
	select {
	case <-n.done:
	case <-time.After(d):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
		n.code = -1
	}
	return n.code
}

// fault is one kind of injected failure.
type fault interface {
	name() string
	// inject starts the fault and returns a description (the victim);
	// heal undoes what can be undone, once the job has failed.
	inject(c *chaos, r *result) string
	heal(c *chaos, r *result)
	// fails says whether the job is expected to fail (garbage is not).
	fails() bool
}

type result struct {
	name         string
	run          string
	n0, n1       *node
	exit0, exit1 int
	log          string
	injectStep   int
	injectedAt   time.Time
	victim       string
	detected     time.Duration
	named        string
	losses       map[int]float64
	lost         int
	resumed      bool
	expectFail   bool
	garbageLines int
}

var (
	jobFailed = regexp.MustCompile(`ERROR\s+job failed`)
	deadRank  = regexp.MustCompile(`"dead_rank": (-?\d+), "reason": "([^"]*)"`)
	linkLost  = regexp.MustCompile(`link rank \d+ <-> rank \d+ lost`)
)

func (c *chaos) run(name string, f fault) *result {
	c.port++
	r := &result{name: name, run: filepath.Join(c.dir, name)}
	if f != nil {
		r.expectFail = f.fails()
	}
	if df, ok := f.(diskFull); ok {
		df.mount(r.run)
		defer df.unmount(r.run)
	}
	coord := net.JoinHostPort(ctlA, strconv.Itoa(c.port))
	extra := []string{}
	if f != nil {
		extra = []string{"--max-restarts", "1", "--rejoin-timeout", "60s"}
	}
	fmt.Fprintf(os.Stderr, "chaos: run %s\n", name)
	r.n0 = c.startNode(0, r.run, coord, extra)
	r.n1 = c.startNode(1, r.run, coord, extra)
	if f != nil {
		r.injectStep = 20 + c.rng.IntN(max(1, c.steps/2))
		if c.waitStep(r, r.injectStep) {
			r.injectedAt = time.Now()
			r.victim = f.inject(c, r)
			// heal once the job has failed (or after a while, for faults
			// the job should shrug off)
			deadline := time.Now().Add(90 * time.Second)
			for time.Now().Before(deadline) {
				if l, ok := r.n0.first(jobFailed); ok && l.at.After(r.injectedAt) {
					break
				}
				if !r.expectFail && time.Since(r.injectedAt) > 5*time.Second {
					break
				}
				if exited(r.n0) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			f.heal(c, r)
		}
	}
	r.exit0, r.exit1 = r.n0.wait(5*time.Minute), r.n1.wait(time.Minute)
	r.log = "node 0:\n" + r.n0.text() + "\nnode 1:\n" + r.n1.text()
	if l, ok := r.n0.first(jobFailed); ok && !r.injectedAt.IsZero() {
		r.detected = l.at.Sub(r.injectedAt)
		if m := deadRank.FindStringSubmatch(l.text); m != nil {
			r.named = "rank " + m[1]
			if m[1] == "-1" {
				r.named = "none"
			}
			// "rank 1 (host h, pid 9) died: why": keep the verb and why
			reason := m[2]
			if i := strings.Index(reason, ") "); i > 0 && strings.HasPrefix(reason, "rank ") {
				reason = reason[i+2:]
			}
			if l := linkLost.FindString(reason); l != "" {
				reason = reason[:strings.Index(reason, ":")] + ": ... " + l // name the link
			}
			if len(reason) > 110 { // the head says what failed, the tail why
				reason = reason[:60] + " ... " + reason[len(reason)-45:]
			}
			r.named += ": " + reason
		}
	}
	r.losses, r.lost, r.resumed = readMetrics(r.run)
	os.WriteFile(filepath.Join(c.dir, name+".log"), []byte(r.log), 0o644)
	return r
}

func exited(n *node) bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// waitStep waits until the run's metrics show step s (false if the job
// ended first or it took over 3 minutes).
func (c *chaos) waitStep(r *result, s int) bool {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		losses, _, _ := readMetrics(r.run)
		if _, ok := losses[s]; ok {
			return true
		}
		if exited(r.n0) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// readMetrics returns the run's loss per step (the last value logged for
// a step: a restarted run logs the steps after its checkpoint again), the
// steps lost by the last resume, and whether there was one.
func readMetrics(run string) (map[int]float64, int, bool) {
	raw, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	out := map[int]float64{}
	lost, resumed := 0, false
	for _, l := range strings.Split(string(raw), "\n") {
		var m struct {
			Event     string   `json:"event"`
			Step      *int     `json:"step"`
			Loss      *float64 `json:"loss"`
			LostSteps int      `json:"lost_steps"`
		}
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if m.Event == "resume" {
			lost, resumed = m.LostSteps, true
		}
		if m.Step != nil && m.Loss != nil {
			out[*m.Step] = *m.Loss
		}
	}
	return out, lost, resumed
}

func (r *result) row(ref *result) string {
	equal := "yes"
	worst := 0.0
	missing := 0
	for s, want := range ref.losses {
		got, ok := r.losses[s]
		if !ok {
			missing++
			continue
		}
		if got != want {
			worst = max(worst, math.Abs(got-want)/math.Abs(want))
		}
	}
	switch {
	case missing > 0:
		equal = fmt.Sprintf("no: %d steps missing (exits %d, %d)", missing, r.exit0, r.exit1)
	case worst > 0:
		equal = fmt.Sprintf("no (largest relative difference %.2g)", worst)
	}
	detected, named, lost := "not detected", "-", "0"
	if r.detected > 0 {
		detected = fmt.Sprintf("%.1f s", r.detected.Seconds())
		named = r.named
	}
	if !r.expectFail && r.detected == 0 {
		detected = fmt.Sprintf("no failure (as wanted; %d log lines about it)", r.garbageLines)
	}
	if r.resumed {
		lost = strconv.Itoa(r.lost)
	}
	return fmt.Sprintf("| %s (%s) | %d | %s | %s | %s | %s |", r.name, r.victim, r.injectStep, detected, named, lost, equal)
}

// ---- faults ----

// worker returns the pid of rank's worker process (a child of a launcher).
func worker(r *result, rank int) int {
	launcher := r.n0.cmd.Process.Pid
	if rank >= 2 {
		launcher = r.n1.cmd.Process.Pid
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(launcher) {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "STRAND_RANK="+strconv.Itoa(rank) {
				return pid
			}
		}
	}
	return 0
}

type kill9 struct{}

func (kill9) name() string { return "kill -9" }
func (kill9) fails() bool  { return true }
func (kill9) inject(c *chaos, r *result) string {
	rank := c.rng.IntN(4)
	if pid := worker(r, rank); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Sprintf("rank %d", rank)
}
func (kill9) heal(*chaos, *result) {}

type sigstop struct{}

func (sigstop) name() string { return "SIGSTOP" }
func (sigstop) fails() bool  { return true }
func (sigstop) inject(c *chaos, r *result) string {
	rank := c.rng.IntN(4)
	if pid := worker(r, rank); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	return fmt.Sprintf("rank %d", rank)
}
func (sigstop) heal(*chaos, *result) {} // the launcher's teardown sends SIGCONT

type partition struct{ data bool }

func (p partition) name() string {
	if p.data {
		return "data-link partition"
	}
	return "full partition"
}
func (partition) fails() bool { return true }
func (p partition) inject(*chaos, *result) string {
	if !p.data {
		_ = ip("-n", nsB, "link", "set", vB, "down")
	}
	_ = ip("-n", nsB, "link", "set", dB, "down")
	if p.data {
		return "node 1's data link"
	}
	return "node 1's links"
}
func (p partition) heal(*chaos, *result) {
	_ = ip("-n", nsB, "link", "set", vB, "up")
	_ = ip("-n", nsB, "link", "set", dB, "up")
}

type garbageFault struct{}

func (garbageFault) name() string { return "garbage connections" }
func (garbageFault) fails() bool  { return false }
func (garbageFault) inject(c *chaos, r *result) string {
	// every TCP port strand listens on in node 0's namespace, and UDP
	// garbage to the gossip ports
	out, _ := exec.Command("ip", "netns", "exec", nsA, "ss", "-ltnuH").CombinedOutput()
	var targets []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && (strings.HasPrefix(f[4], ctlA+":") || strings.HasPrefix(f[4], dataA+":") || strings.HasPrefix(f[4], "0.0.0.0:")) {
			targets = append(targets, f[0]+"/"+strings.Replace(f[4], "0.0.0.0", ctlA, 1))
		}
	}
	self, _ := os.Executable()
	_ = exec.Command("ip", append([]string{"netns", "exec", nsB, self, "garbage"}, targets...)...).Run()
	return fmt.Sprintf("%d ports x 50", len(targets))
}
func (garbageFault) heal(c *chaos, r *result) {
	time.Sleep(time.Second)
	re := regexp.MustCompile(`garbage|truncated|refused connection|gossip: `)
	for _, n := range []*node{r.n0, r.n1} {
		n.mu.Lock()
		for _, l := range n.lines {
			if l.at.After(r.injectedAt) && re.MatchString(l.text) {
				r.garbageLines++
			}
		}
		n.mu.Unlock()
	}
}

// garbage is the helper mode: 50 connections of junk to each target
// ("tcp/host:port" or "udp/host:port").
func garbage(targets []string) {
	for _, t := range targets {
		proto, addr, _ := strings.Cut(t, "/")
		for i := 0; i < 50; i++ {
			c, err := net.DialTimeout(proto, addr, time.Second)
			if err != nil {
				continue
			}
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: chaos\r\n\r\n\x00\x01garbage"))
			c.Close()
		}
	}
}

type diskFull struct{}

func (diskFull) name() string { return "full disk" }
func (diskFull) fails() bool  { return true }
func (diskFull) mount(dir string) {
	_ = os.MkdirAll(dir, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", dir).CombinedOutput(); err != nil {
		fatal(fmt.Sprintf("mount tmpfs: %v: %s", err, out))
	}
}
func (diskFull) unmount(dir string) { _ = exec.Command("umount", dir).Run() }
func (diskFull) inject(c *chaos, r *result) string {
	f, err := os.Create(filepath.Join(r.run, "filler"))
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n := 0
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
		n++
	}
	return fmt.Sprintf("filled with %d MiB", n)
}
func (diskFull) heal(c *chaos, r *result) { _ = os.Remove(filepath.Join(r.run, "filler")) }
