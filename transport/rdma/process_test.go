package rdma

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/transport/dirstore"
	"github.com/strand-ml/strand/transport/rdma/softverbs"
)

// The soft provider between real processes: the test binary re-executes
// itself as ranks that meet through a directory store, as `strand bench
// collective --transport rdma` does on one machine.

const childEnv = "STRAND_RDMA_TEST_CHILD" // "rank,size,dir,rounds"

// TestHelperProcess is a rank when run as a child; otherwise it does nothing.
func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("helper process for the multi-process tests")
	}
	os.Exit(runChild(spec))
}

func runChild(spec string) int {
	f := strings.Split(spec, ",")
	rank, _ := strconv.Atoi(f[0])
	size, _ := strconv.Atoi(f[1])
	rounds, _ := strconv.Atoi(f[3])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := Dial(ctx, Config{Rank: rank, Size: size, Store: dirstore.New(f[2]), Provider: softverbs.New(softverbs.Options{})})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	defer tr.Close()
	ranks := make([]int, size)
	for i := range ranks {
		ranks[i] = i
	}
	c, err := collective.New(tr, ranks, collective.Options{Timeout: 5 * time.Second, SmallBytes: 1, SegmentBytes: 64 << 10})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	defer c.Close()
	buf := make(collective.F32, 1<<18) // 1 MiB
	for k := 0; rounds < 0 || k < rounds; k++ {
		for i := range buf {
			buf[i] = float32(rank + i%3)
		}
		if err := c.AllReduce(ctx, buf, collective.Sum); err != nil {
			fmt.Println("ERR", err)
			// Stay up a moment: our exit would be a second failure that
			// the other survivor might see before the first.
			time.Sleep(time.Second)
			return 1
		}
		for i, v := range buf {
			if want := float32(size*(size-1)/2 + size*(i%3)); v != want {
				fmt.Println("ERR element", i, v, "want", want)
				return 1
			}
		}
		if k == 0 {
			fmt.Println("RUNNING") // the parent may kill a rank now
		}
	}
	fmt.Println("OK")
	return 0
}

type child struct {
	cmd *exec.Cmd
	out *syncBuffer
}

// syncBuffer is a bytes.Buffer the child's output copier and the test
// may use at once.
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

func startRanks(t *testing.T, size, rounds int) []child {
	dir := t.TempDir()
	cs := make([]child, size)
	for r := range size {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d,%s,%d", childEnv, r, size, dir, rounds))
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cs[r] = child{cmd, out}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	return cs
}

func TestMultiProcessAllReduce(t *testing.T) {
	cs := startRanks(t, 3, 5)
	for r, c := range cs {
		err := c.cmd.Wait()
		if err != nil || !strings.Contains(c.out.String(), "OK") {
			t.Errorf("rank %d: %v\n%s", r, err, c.out)
		}
	}
}

// SIGKILL one rank mid-AllReduce: every other process exits with an error
// naming it, well within the 5 s collective deadline.
func TestMultiProcessKilledRank(t *testing.T) {
	cs := startRanks(t, 3, -1)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(cs[2].out.String(), "RUNNING") {
		if time.Now().After(deadline) {
			t.Fatalf("rank 2 never started running: %s", cs[2].out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed := time.Now()
	cs[2].cmd.Process.Kill()
	for r := range 2 {
		for !strings.Contains(cs[r].out.String(), "ERR") && time.Since(killed) < 10*time.Second {
			time.Sleep(5 * time.Millisecond)
		}
		out := cs[r].out.String()
		if !strings.Contains(out, "ERR") || !strings.Contains(out, "rank(s) [2] failed") {
			t.Errorf("rank %d: output %q, want an error naming rank 2", r, out)
		}
	}
	if took := time.Since(killed); took > 5*time.Second {
		t.Errorf("survivors reported %v after the kill", took)
	}
	for r := range 2 {
		cs[r].cmd.Wait()
	}
}
