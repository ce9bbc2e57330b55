package collective

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport/dirstore"
	"github.com/strand-ml/strand/transport/shm"
)

// Cross-process tests over shared memory: this test binary re-run as N
// children that meet through a dirstore and map each other's segments.

const shmChildEnv = "STRAND_COLLECTIVE_SHM_CHILD" // "mode rank size dir"

func TestShmChildProcess(t *testing.T) {
	spec := os.Getenv(shmChildEnv)
	if spec == "" {
		t.Skip("only runs as a child of the shared-memory cross-process tests")
	}
	var mode, dir string
	var rank, size int
	if _, err := fmt.Sscan(spec, &mode, &rank, &size, &dir); err != nil {
		t.Fatalf("bad %s=%q: %v", shmChildEnv, spec, err)
	}
	if err := shmChild(mode, rank, size, dir); err != nil {
		fmt.Printf("RESULT rank %d: %v\n", rank, err)
		os.Exit(3)
	}
	fmt.Printf("RESULT rank %d: ok\n", rank)
}

func shmChild(mode string, rank, size int, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr, err := shm.Dial(ctx, shm.Config{Rank: rank, Size: size, Store: dirstore.New(dir), JobID: "xproc",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	defer tr.Close()
	ranks := make([]int, size)
	for i := range ranks {
		ranks[i] = i
	}
	switch mode {
	case "ops":
		for _, name := range []string{"latency", "bandwidth"} {
			opts := variants[name]
			opts.Name = name
			c, err := New(tr, ranks, opts)
			if err != nil {
				return err
			}
			for _, count := range []int{0, 1, 13, 1031} {
				if err := opsOnRank(ctx, c, count); err != nil {
					return fmt.Errorf("%s count %d: %w", name, count, err)
				}
			}
			c.Close()
		}
		c, _ := New(tr, ranks, Options{Name: "final"})
		return c.Barrier(ctx)
	case "kill", "killsmall": // killsmall: all-reduces through the shared windows
		c, err := New(tr, ranks, Options{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		buf := make(F32, 4<<20)
		if mode == "killsmall" {
			buf = make(F32, 1000)
		}
		for k := 0; ; k++ {
			if err := c.AllReduce(context.Background(), buf, Sum); err != nil {
				return err
			}
			if k == 0 {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("ready-", rank)), nil, 0o644); err != nil {
					return err
				}
			}
		}
	case "fail": // rank 1 returns an error after one all-reduce (a failure, not a crash)
		c, err := New(tr, ranks, Options{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		if err := c.AllReduce(ctx, make(F32, 1000), Sum); err != nil {
			return err
		}
		if rank == 1 {
			return fmt.Errorf("rank 1 gives up")
		}
		return c.AllReduce(ctx, make(F32, 1000), Sum)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func spawnShm(t *testing.T, mode string, size int, dir string) ([]*exec.Cmd, []*bufio.Scanner) {
	t.Helper()
	var cmds []*exec.Cmd
	var outs []*bufio.Scanner
	for r := 0; r < size; r++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestShmChildProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %s", shmChildEnv, mode, r, size, dir))
		cmd.Stderr = io.Discard
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		cmds = append(cmds, cmd)
		outs = append(outs, bufio.NewScanner(out))
	}
	return cmds, outs
}

// shmEntries counts what is in /dev/shm (the transport must never leave
// anything there; its segments have no names at all).
func shmEntries(t *testing.T) int {
	es, err := os.ReadDir("/dev/shm")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	return len(es)
}

func TestShmAllOpsAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	before := shmEntries(t)
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			cmds, outs := spawnShm(t, "ops", n, t.TempDir())
			for r, lr := range outs {
				if res := result(lr); res != "ok" {
					t.Errorf("rank %d: %s", r, res)
				}
			}
			for _, c := range cmds {
				_ = c.Wait()
			}
		})
	}
	if after := shmEntries(t); after != before {
		t.Errorf("/dev/shm held %d entries before, %d after", before, after)
	}
}

func TestShmKilledProcessIsNamedBySurvivors(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, mode := range []string{"kill", "killsmall"} {
		t.Run(mode, func(t *testing.T) { testKilledProcess(t, mode) })
	}
}

// testKilledProcess: 4 processes all-reduce in a loop (4M floats through
// the rings, or 1000 through the shared windows), rank 2 is killed with
// SIGKILL; every survivor names it within the deadline, and /dev/shm is
// as it was.
func testKilledProcess(t *testing.T, mode string) {
	before := shmEntries(t)
	const n, victim = 4, 2
	dir := t.TempDir()
	cmds, outs := spawnShm(t, mode, n, dir)
	deadline := time.Now().Add(30 * time.Second)
	for r := 0; r < n; r++ {
		for {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprint("ready-", r))); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rank %d never finished its first all-reduce", r)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
	killed := time.Now()
	if err := cmds[victim].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for r := 0; r < n; r++ {
		if r == victim {
			continue
		}
		res := result(outs[r])
		took := time.Since(killed)
		if !strings.Contains(res, "allreduce seq") || !strings.Contains(res, fmt.Sprintf("rank(s) [%d] failed", victim)) {
			t.Errorf("rank %d: %q, want an allreduce error naming rank %d", r, res, victim)
		}
		if took > 10*time.Second {
			t.Errorf("rank %d reported after %v, beyond the 10s deadline", r, took)
		}
		t.Logf("rank %d after %v: %s", r, took.Round(time.Millisecond), res)
	}
	for _, c := range cmds {
		_ = c.Wait()
	}
	if after := shmEntries(t); after != before {
		t.Errorf("/dev/shm held %d entries before, %d after a kill -9", before, after)
	}
}

// A rank that fails (returns an error and closes its transport) is named
// by the others through its goodbye, and nothing is left in /dev/shm.
func TestShmFailedProcessLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	before := shmEntries(t)
	start := time.Now()
	cmds, outs := spawnShm(t, "fail", 3, t.TempDir())
	for r, lr := range outs {
		res := result(lr)
		if r == 1 && !strings.Contains(res, "gives up") {
			t.Errorf("rank 1: %q", res)
		}
		if r != 1 && (res == "ok" || !strings.Contains(res, "allreduce seq 1")) {
			t.Errorf("rank %d: %q, want allreduce seq 1 to fail", r, res)
		}
	}
	// The survivors' calls (1000 floats: through the shared windows) learn
	// of the goodbye from the region's state, not from their 60 s deadline.
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the survivors reported after %v", took)
	}
	for _, c := range cmds {
		_ = c.Wait()
	}
	if after := shmEntries(t); after != before {
		t.Errorf("/dev/shm held %d entries before, %d after", before, after)
	}
}
