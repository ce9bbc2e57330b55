package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strand-ml/strand/coordinator"
	pb "github.com/strand-ml/strand/coordinator/proto"
)

// strandBin is the binary under test, built once by TestMain.
var strandBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strand-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	strandBin = filepath.Join(dir, "strand")
	build := exec.Command("go", "build", "-o", strandBin, "github.com/strand-ml/strand/cmd/strand")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build strand:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// job is one strand process started by a test.
type job struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs argv (argv[0] "strand" means the binary under test) with
// extra environment variables; output goes to one buffer.
func start(t *testing.T, env []string, argv ...string) *job {
	t.Helper()
	if argv[0] == "strand" {
		argv[0] = strandBin
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), env...)
	j := &job{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = j.out, j.out
	// Own process group, so a failed test can kill the job's workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { j.err = cmd.Wait(); close(j.done) }()
	t.Cleanup(func() {
		select {
		case <-j.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-j.done
		}
	})
	return j
}

// cleanEnv is the test's environment without any launcher's variables, so
// a test run inside Slurm or a strand job does not confuse the workers.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "STRAND_") || strings.HasPrefix(k, "SLURM_") || k == "RANK" || k == "WORLD_SIZE" ||
			k == "LOCAL_RANK" || k == "MASTER_ADDR" || k == "MASTER_PORT" || k == "JOB_COMPLETION_INDEX" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// wait waits up to d for the job to exit and returns its exit code.
func (j *job) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-j.done:
	case <-time.After(d):
		t.Fatalf("job still running after %v; output:\n%s", d, j.out.String())
	}
	if j.err == nil {
		return 0
	}
	if ee, ok := j.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", j.err)
	return -1
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePorts finds n consecutive free ports on 127.0.0.1 and returns the
// first (free when it looked: another process may still take one).
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := freePort(t)
		var lns []net.Listener
		ok := true
		for i := 0; i < n && ok; i++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

func TestLocalJobs(t *testing.T) {
	const windows = "barrier ok (through shared windows)" // ranks of one host over shared memory
	cases := []struct {
		name      string
		args      []string
		want, not []string
	}{
		{"4 processes dp2 tp2", []string{"--nproc", "4", "--tp", "2"}, []string{"tp group [2 3]: all-reduce of 4099 floats and " + windows, "dp group [1 3]", "mesh dp=2 tp=2 pp=1"}, nil},
		{"4 processes dp1 tp2 pp2", []string{"--nproc", "4", "--tp", "2", "--pp", "2"}, []string{"pp group [1 3]", "tp group [0 1]"}, nil},
		{"8 processes dp2 tp2 pp2", []string{"--nproc", "8", "--tp", "2", "--pp", "2"}, []string{"pp group [3 7]", "dp group [4 6]", "tp group [6 7]", "mesh dp=2 tp=2 pp=2"}, nil},
		{"4 processes over RDMA verbs (software provider)", []string{"--nproc", "4", "--tp", "2", "--transport", "rdma", "--rdma-provider", "soft"}, []string{`"transport": "rdma/soft"`, "tp group [2 3]"}, []string{windows}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := start(t, nil, append([]string{"strand", "check"}, tc.args...)...)
			if code := j.wait(t, 90*time.Second); code != 0 {
				t.Fatalf("exit %d; output:\n%s", code, j.out.String())
			}
			out := j.out.String()
			for _, w := range append(tc.want, "check passed") {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			n, _ := strconv.Atoi(tc.args[1])
			for r := 0; r < n; r++ {
				if !strings.Contains(out, fmt.Sprintf("[rank %d] rank %d ", r, r)) {
					t.Errorf("rank %d did not verify its groups", r)
				}
			}
		})
	}
}

// status polls the coordinator until cond holds or d passes.
func status(t *testing.T, addr, token string, d time.Duration, cond func(*pb.StatusReply) bool) *pb.StatusReply {
	t.Helper()
	c, err := coordinator.Dial(coordinator.ClientConfig{Addr: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(d)
	var last *pb.StatusReply
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last, lastErr = c.Status(ctx)
		cancel()
		if lastErr == nil && cond(last) {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("coordinator %s: condition not met after %v (last %v, %v)", addr, d, last, lastErr)
	return nil
}

func allStepped(st *pb.StatusReply) bool {
	if st.State != pb.JobState_JOB_STATE_RUNNING || int(st.Joined) != int(st.World) {
		return false
	}
	for _, r := range st.Ranks {
		if r.State != "running" {
			return false
		}
	}
	return true
}

// twoNodes starts both nodes of a 2 x 2 job on loopback.
func twoNodes(t *testing.T, token string, extra ...string) (node0, node1 *job, coord string) {
	coord = "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := func(rank int) []string {
		a := []string{"strand", "check", "--nnodes", "2", "--node-rank", strconv.Itoa(rank), "--coordinator", coord,
			"--nproc-per-node", "2", "--token", token}
		return append(a, extra...)
	}
	node0 = start(t, nil, args(0)...)
	node1 = start(t, nil, args(1)...)
	return node0, node1, coord
}

func TestKillWorkerStopsWholeJob(t *testing.T) {
	node0, node1, coord := twoNodes(t, "kill-token", "--duration", "120s")
	st := status(t, coord, "kill-token", 60*time.Second, allStepped)
	// `strand status` shows every rank with its mesh coordinates.
	q := start(t, nil, "strand", "status", "--coordinator", coord, "--token", "kill-token")
	if code := q.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("status exit %d:\n%s", code, q.out)
	}
	for _, w := range []string{"state running", "mesh dp=4 tp=1 pp=1", "ranks 4/4 joined", "RANK  HOST"} {
		if !strings.Contains(q.out.String(), w) {
			t.Errorf("status output lacks %q:\n%s", w, q.out)
		}
	}
	if n := strings.Count(q.out.String(), "  running  "); n != 4 {
		t.Errorf("status lists %d running ranks, want 4:\n%s", n, q.out)
	}
	victim := st.Ranks[3].Member // a worker of node 1
	if err := syscall.Kill(int(victim.Pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill rank 3 (pid %d): %v", victim.Pid, err)
	}
	killed := time.Now()
	code0 := node0.wait(t, 10*time.Second)
	code1 := node1.wait(t, 10*time.Second)
	t.Logf("both nodes exited %v after the kill (codes %d, %d)", time.Since(killed), code0, code1)
	if code0 == 0 || code1 == 0 {
		t.Fatalf("exit codes %d %d, want failures; node 0:\n%s\nnode 1:\n%s", code0, code1, node0.out, node1.out)
	}
	// Node 0 never touched rank 3's process: it must learn the culprit
	// from the coordinator.
	out0 := node0.out.String()
	if !strings.Contains(out0, "rank 3 (host") || !strings.Contains(out0, "died") {
		t.Fatalf("node 0's output does not name rank 3 as dead:\n%s", out0)
	}
	if out1 := node1.out.String(); !strings.Contains(out1, "rank 3 was killed by signal killed") || code1 != 137 {
		t.Fatalf("node 1 (exit %d) does not report its killed worker:\n%s", code1, out1)
	}
}

func TestLocalKillExitCode(t *testing.T) {
	j := start(t, []string{"STRAND_COORDINATOR_PORT="}, "strand", "check", "--nproc", "3", "--duration", "120s")
	// Find rank 1's process among the launcher's children.
	var pid int
	deadline := time.Now().Add(60 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		if strings.Count(j.out.String(), "barrier ok") >= 3*4 {
			pid = childWithRank(t, j.cmd.Process.Pid, 1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatalf("rank 1 never came up:\n%s", j.out)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	code := j.wait(t, 10*time.Second)
	if code != 137 || !strings.Contains(j.out.String(), "rank 1 was killed by signal killed") {
		t.Fatalf("exit %d, output:\n%s", code, j.out)
	}
}

// childWithRank finds the child of parent whose STRAND_RANK is rank.
func childWithRank(t *testing.T, parent, rank int) int {
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
		// Fields after the command name, which is in parentheses.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == "STRAND_RANK="+strconv.Itoa(rank) {
				return pid
			}
		}
	}
	return 0
}

func TestWrongTokenRefused(t *testing.T) {
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	node0 := start(t, nil, "strand", "check", "--nnodes", "2", "--node-rank", "0", "--coordinator", coord,
		"--nproc-per-node", "1", "--token", "right", "--join-timeout", "60s")
	status(t, coord, "right", 30*time.Second, func(st *pb.StatusReply) bool { return st.Joined == 1 })

	// A status query with the wrong token is refused...
	q := start(t, nil, "strand", "status", "--coordinator", coord, "--token", "wrong")
	if code := q.wait(t, 20*time.Second); code == 0 || !strings.Contains(q.out.String(), "wrong job token") {
		t.Fatalf("status with a wrong token: exit %d\n%s", code, q.out)
	}
	// ... and so is a node that tries to join with it.
	bad := start(t, nil, "strand", "check", "--nnodes", "2", "--node-rank", "1", "--coordinator", coord,
		"--nproc-per-node", "1", "--token", "wrong")
	if code := bad.wait(t, 30*time.Second); code == 0 || !strings.Contains(bad.out.String(), "wrong job token") {
		t.Fatalf("node with a wrong token: exit %d\n%s", code, bad.out)
	}
	// The right token still works and shows the waiting job.
	q = start(t, nil, "strand", "status", "--coordinator", coord, "--token", "right")
	if code := q.wait(t, 20*time.Second); code != 0 || !strings.Contains(q.out.String(), "state waiting") {
		t.Fatalf("status: exit %d\n%s", code, q.out)
	}
	_ = node0.cmd.Process.Signal(syscall.SIGTERM)
	node0.wait(t, 15*time.Second)
}

func TestLateCoordinatorIsRetried(t *testing.T) {
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := func(rank int) []string {
		return []string{"strand", "check", "--nnodes", "2", "--node-rank", strconv.Itoa(rank), "--coordinator", coord,
			"--nproc-per-node", "1", "--token", "late"}
	}
	node1 := start(t, nil, args(1)...)
	time.Sleep(2 * time.Second) // node 1's worker retries meanwhile
	node0 := start(t, nil, args(0)...)
	if c0, c1 := node0.wait(t, 60*time.Second), node1.wait(t, 60*time.Second); c0 != 0 || c1 != 0 {
		t.Fatalf("exit %d %d\nnode 0:\n%s\nnode 1:\n%s", c0, c1, node0.out, node1.out)
	}
}

func TestMissingCoordinatorGivesClearError(t *testing.T) {
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	start0 := time.Now()
	j := start(t, nil, "strand", "check", "--nnodes", "2", "--node-rank", "1", "--coordinator", coord,
		"--nproc-per-node", "1", "--token", "x", "--connect-timeout", "2s")
	code := j.wait(t, 30*time.Second)
	if code == 0 || !strings.Contains(j.out.String(), "coordinator "+coord+" not reachable after 2s") {
		t.Fatalf("exit %d after %v:\n%s", code, time.Since(start0), j.out)
	}
}

func TestAbortFromStatus(t *testing.T) {
	node0, node1, coord := twoNodes(t, "abort-token", "--duration", "120s")
	status(t, coord, "abort-token", 60*time.Second, allStepped)
	q := start(t, nil, "strand", "status", "--coordinator", coord, "--token", "abort-token", "--abort", "operator stop")
	if code := q.wait(t, 20*time.Second); code != 0 || !strings.Contains(q.out.String(), "state failed") {
		t.Fatalf("status --abort: exit %d\n%s", code, q.out)
	}
	c0, c1 := node0.wait(t, 10*time.Second), node1.wait(t, 10*time.Second)
	for i, n := range []*job{node0, node1} {
		if c := []int{c0, c1}[i]; c == 0 || !strings.Contains(n.out.String(), "operator stop") {
			t.Fatalf("node %d exit %d without naming the abort:\n%s", i, c, n.out)
		}
	}
}

// TestFrozenWorkerDetectedByGossip stops (SIGSTOP) one worker: its sockets
// stay open, so only memberlist can tell it no longer answers. The job must
// still end within 10 s, naming that rank.
func TestFrozenWorkerDetectedByGossip(t *testing.T) {
	j := start(t, nil, "strand", "check", "--nproc", "3", "--duration", "120s")
	var pid int
	deadline := time.Now().Add(60 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		if strings.Count(j.out.String(), "barrier ok") >= 3*4 {
			pid = childWithRank(t, j.cmd.Process.Pid, 1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatalf("rank 1 never came up:\n%s", j.out)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	frozen := time.Now()
	code := j.wait(t, 10*time.Second)
	t.Logf("job exited %d, %v after the freeze", code, time.Since(frozen))
	out := j.out.String()
	if code == 0 || !strings.Contains(out, "rank 1 (host") || !strings.Contains(out, "memberlist stopped hearing from it") {
		t.Fatalf("exit %d, output does not blame rank 1 through memberlist:\n%s", code, out)
	}
}

// TestForeignLaunchers starts workers the way torchrun and a Kubernetes
// Indexed Job do: no strand launcher, each process told its rank by
// environment variables, rank 0 hosting the coordinator.
func TestForeignLaunchers(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(rank int, port string) []string
	}{
		{"torchrun", func(rank int, port string) []string {
			return []string{"RANK=" + strconv.Itoa(rank), "WORLD_SIZE=2", "LOCAL_RANK=" + strconv.Itoa(rank),
				"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port}
		}},
		{"kubernetes", func(rank int, port string) []string {
			return []string{"JOB_COMPLETION_INDEX=" + strconv.Itoa(rank), "STRAND_WORLD_SIZE=2",
				"STRAND_COORDINATOR=127.0.0.1:" + port}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := strconv.Itoa(freePort(t))
			var jobs []*job
			for r := 0; r < 2; r++ {
				env := append(tc.env(r, port), "STRAND_TOKEN=foreign")
				jobs = append(jobs, start(t, env, "strand", "check"))
			}
			for r, j := range jobs {
				if code := j.wait(t, 60*time.Second); code != 0 || !strings.Contains(j.out.String(), "every group verified") ||
					!strings.Contains(j.out.String(), `"source": "`+tc.name+`"`) {
					t.Fatalf("rank %d exit %d:\n%s", r, code, j.out)
				}
			}
		})
	}
}

// TestSignalForwarded sends SIGTERM to the launcher alone: it must forward
// it, and no worker may outlive the launcher.
func TestSignalForwarded(t *testing.T) {
	j := start(t, nil, "strand", "check", "--nproc", "2", "--duration", "120s")
	var pids []int
	deadline := time.Now().Add(60 * time.Second)
	for len(pids) < 2 && time.Now().Before(deadline) {
		pids = pids[:0]
		if strings.Count(j.out.String(), "barrier ok") >= 2*4 {
			for r := 0; r < 2; r++ {
				if p := childWithRank(t, j.cmd.Process.Pid, r); p != 0 {
					pids = append(pids, p)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(pids) < 2 {
		t.Fatalf("workers never came up:\n%s", j.out)
	}
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	code := j.wait(t, 10*time.Second)
	if code == 0 || !strings.Contains(j.out.String(), "interrupted") {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, j.out)
	}
	for _, p := range pids {
		if err := syscall.Kill(p, 0); err == nil {
			t.Errorf("worker pid %d outlived the launcher", p)
		}
	}
}

// TestMetricsEndpoints scrapes the coordinator's and a worker's /metrics
// while a job runs.
func TestMetricsEndpoints(t *testing.T) {
	// worker rank r listens on wport+r: both ports must be free
	cport, wport := freePort(t), freePorts(t, 2)
	j := start(t, nil, "strand", "check", "--nproc", "2", "--duration", "120s",
		"--metrics", "127.0.0.1:"+strconv.Itoa(cport), "--worker-metrics-port", strconv.Itoa(wport))
	scrape := func(port int) string {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	deadline := time.Now().Add(60 * time.Second)
	var coord, work string
	for time.Now().Before(deadline) {
		coord, work = scrape(cport), scrape(wport)
		if strings.Contains(coord, `strand_step{rank="1"} `) && strings.Contains(coord, `strand_check_round_seconds{rank="0"}`) &&
			strings.Contains(work, `strand_transport_bytes_total{dir="send",peer_group="dp"} `) &&
			!strings.Contains(work, `strand_transport_bytes_total{dir="send",peer_group="dp"} 0`+"\n") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	j.wait(t, 15*time.Second)
	if !strings.Contains(coord, `strand_step{rank="1"} `) || !strings.Contains(work, `strand_transport_bytes_total{dir="send",peer_group="dp"} `) {
		t.Fatalf("metrics missing\ncoordinator:\n%s\nworker 0:\n%s\njob:\n%s", coord, work, j.out)
	}
}

// TestJoinTimeoutNamesMissingRanks starts only node 0 of a 2-node job: the
// coordinator gives up after --join-timeout and says which ranks are missing.
func TestJoinTimeoutNamesMissingRanks(t *testing.T) {
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	j := start(t, nil, "strand", "check", "--nnodes", "2", "--node-rank", "0", "--coordinator", coord,
		"--nproc-per-node", "2", "--token", "t", "--join-timeout", "2s")
	code := j.wait(t, 30*time.Second)
	out := j.out.String()
	if code == 0 || !strings.Contains(out, "join timeout after 2s: 2 of 4 ranks joined") || !strings.Contains(out, "missing ranks 2,3") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
