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
	"github.com/strand-ml/strand/transport/tcp"
)

// Cross-process tests re-run this test binary as N child processes (one
// rank each) that meet through a dirstore in a temporary directory and
// talk TCP over 127.0.0.1.

const childEnv = "STRAND_COLLECTIVE_CHILD" // "mode rank size dir"

// TestChildProcess is the child's entry point; it does nothing in a
// normal test run.
func TestChildProcess(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("only runs as a child of the cross-process tests")
	}
	var mode, dir string
	var rank, size int
	if _, err := fmt.Sscan(spec, &mode, &rank, &size, &dir); err != nil {
		t.Fatalf("bad %s=%q: %v", childEnv, spec, err)
	}
	if err := child(mode, rank, size, dir); err != nil {
		fmt.Printf("RESULT rank %d: %v\n", rank, err)
		os.Exit(3)
	}
	fmt.Printf("RESULT rank %d: ok\n", rank)
}

func child(mode string, rank, size int, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr, err := tcp.Dial(ctx, tcp.Config{Rank: rank, Size: size, Store: dirstore.New(dir), JobID: "xproc", Token: "tok",
		Bind: "127.0.0.0/8", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
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
		for _, name := range []string{"latency", "bandwidth"} { // the same order on every rank
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
		// Do not close before every rank is done with us.
		c, _ := New(tr, ranks, Options{Name: "final"})
		return c.Barrier(ctx)
	case "kill":
		c, err := New(tr, ranks, Options{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		buf := make(F32, 4<<20)
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
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// spawn starts size children in mode and returns them with their stdout.
func spawn(t *testing.T, mode string, size int, dir string) ([]*exec.Cmd, []*bufio.Scanner) {
	t.Helper()
	var cmds []*exec.Cmd
	var outs []*bufio.Scanner
	for r := 0; r < size; r++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %s", childEnv, mode, r, size, dir))
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

// result reads a child's RESULT line.
func result(sc *bufio.Scanner) string {
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "RESULT ") {
			_, after, _ := strings.Cut(line, ": ")
			return after
		}
	}
	return "no result (child died?)"
}

func TestAllOpsAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			_, outs := spawn(t, "ops", n, t.TempDir())
			for r, sc := range outs {
				if res := result(sc); res != "ok" {
					t.Errorf("rank %d: %s", r, res)
				}
			}
		})
	}
}

func TestKilledProcessIsNamedBySurvivors(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const n, victim = 4, 2
	dir := t.TempDir()
	cmds, outs := spawn(t, "kill", n, dir)
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
	time.Sleep(50 * time.Millisecond) // well inside a 16 MiB all-reduce
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
}
