package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/hybrid"
	"github.com/strand-ml/strand/transport/shm"
)

// The collective suite over the shared-memory transport, in one process
// (every rank's segments mapped here); shm_process_test.go runs it across
// processes.

func shmWorld(t testing.TB, n int) []transport.Transport {
	t.Helper()
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make([]transport.Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 256 KiB rings: long messages stream through the ring.
			tr, err := shm.Dial(ctx, shm.Config{Rank: r, Size: n, Store: store, JobID: t.Name(), RingBytes: 256 << 10,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			out[r], errs[r] = tr, err
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("dial rank %d: %v", r, err)
		}
	}
	t.Cleanup(func() {
		for _, tr := range out {
			tr.Close()
		}
	})
	return out
}

func TestAllOpsShm(t *testing.T) {
	for n := 1; n <= 8; n++ {
		t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
			ts := shmWorld(t, n)
			for _, name := range []string{"latency", "bandwidth"} {
				for _, count := range []int{0, 1, 2, 7, 13, 101, 1031} {
					opts := variants[name]
					opts.Name = fmt.Sprint(name, count) // a fresh communicator each time
					stop := dumpIfSlow(t, ts, 10*time.Second)
					checkAllOps(t, ts, count, opts)
					stop()
				}
			}
		})
	}
}

// dumpIfSlow logs every transport's State (those that have one) if the
// returned stop is not called within d: what a hung collective left in
// the transports, for diagnosis.
func dumpIfSlow(t *testing.T, ts []transport.Transport, d time.Duration) (stop func()) {
	tm := time.AfterFunc(d, func() {
		var b strings.Builder
		for _, tr := range ts {
			if s, ok := tr.(interface{ State() string }); ok {
				b.WriteString(s.State())
				b.WriteString("\n")
			}
		}
		var g strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&g, 2)
		t.Logf("still running after %v; transports:\n%s\ngoroutines:\n%s", d, b.String(), g.String())
	})
	return func() { tm.Stop() }
}

// Long all-reduces (segments reduced straight out of the peer's ring in
// chunks) give the loopback transport's bits, for every op and rank.
func TestShmChunkedReduceMatchesLoopbackToTheBit(t *testing.T) {
	const n, count = 3, 3<<18 + 5
	rng := rand.New(rand.NewSource(3))
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = make([]float32, count)
		for i := range inputs[r] {
			inputs[r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(6)-3)))
		}
	}
	run := func(ts []transport.Transport, op Op) [][]float32 {
		res := make([][]float32, n)
		onAll(t, ts, Options{Name: fmt.Sprint(op)}, func(r int, c *Comm) error {
			buf := F32(append([]float32(nil), inputs[r]...))
			res[r] = buf
			return c.AllReduce(context.Background(), buf, op)
		})
		return res
	}
	sw := shmWorld(t, n)
	for _, op := range []Op{Sum, Avg, Min, Max} {
		want, got := run(loopbackWorld(t, n), op), run(sw, op)
		for r := range got {
			for i := range got[r] {
				if math.Float32bits(got[r][i]) != math.Float32bits(want[0][i]) {
					t.Fatalf("%v rank %d element %d: shm %v, loopback %v", op, r, i, got[r][i], want[0][i])
				}
			}
		}
	}
}

func TestShmGroupsAndAsyncCalls(t *testing.T) {
	const n = 4
	ts := shmWorld(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := runEach(ts, Options{}, func(r int, c *Comm) error {
		pair, err := New(ts[r], []int{r &^ 1, r | 1}, Options{Name: "pair"})
		if err != nil {
			return err
		}
		defer pair.Close()
		a, b := make(F32, 300000), make(F32, 1000)
		for i := range a {
			a[i] = float32(r)
		}
		for i := range b {
			b[i] = 1
		}
		h := c.AllReduceAsync(ctx, a, Sum)
		if err := pair.AllReduce(ctx, b, Sum); err != nil {
			return err
		}
		if err := h.Wait(ctx); err != nil {
			return err
		}
		if a[12345] != 6 || b[999] != 2 {
			return fmt.Errorf("world %v, pair %v", a[12345], b[999])
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

func TestShmMismatchedCallIsReported(t *testing.T) {
	ts := shmWorld(t, 4)
	errs := runEach(ts, Options{Timeout: time.Second}, func(r int, c *Comm) error {
		ctx := context.Background()
		if err := c.AllReduce(ctx, make(F32, 10), Sum); err != nil {
			return err
		}
		if r == 2 {
			return c.AllReduce(ctx, make(F32, 11), Sum)
		}
		return c.AllReduce(ctx, make(F32, 10), Sum)
	})
	var me *MismatchError
	if !errors.As(errs[2], &me) || !strings.Contains(errs[2].Error(), "allreduce seq 1") {
		t.Fatalf("rank 2: %v, want a MismatchError at seq 1", errs[2])
	}
	for _, r := range []int{1, 3} {
		if !errors.As(errs[r], &me) || me.PeerRank != 2 {
			t.Errorf("rank %d: %v, want a MismatchError naming rank 2", r, errs[r])
		}
	}
}

func TestShmDeadRankIsNamedByEverySurvivor(t *testing.T) {
	ts := shmWorld(t, 4)
	const deadline = 5 * time.Second
	start := time.Now()
	errs := runEach(ts, Options{Timeout: deadline, SmallBytes: 1, SegmentBytes: 4096}, func(r int, c *Comm) error {
		buf := make(F32, 1<<16)
		for k := 0; ; k++ {
			if r == 3 && k == 5 {
				crash(ts[3])
				return nil
			}
			if err := c.AllReduce(context.Background(), buf, Sum); err != nil {
				return err
			}
		}
	})
	if took := time.Since(start); took > deadline {
		t.Errorf("survivors took %v, deadline %v", took, deadline)
	}
	for r := 0; r < 3; r++ {
		if errs[r] == nil || !strings.Contains(errs[r].Error(), "rank(s) [3] failed") {
			t.Errorf("rank %d: %v, want an error naming rank 3", r, errs[r])
		}
	}
}

func TestShmHungRankTimesOut(t *testing.T) {
	ts := shmWorld(t, 3)
	const deadline = 300 * time.Millisecond
	start := time.Now()
	errs := runEach(ts, Options{Timeout: deadline}, func(r int, c *Comm) error {
		if r == 1 {
			return nil // alive but never calls
		}
		return c.AllReduce(context.Background(), make(F32, 8), Sum)
	})
	wantTimeoutNaming(t, errs, 0, 1, start, deadline)
}

// hybridWorld puts ranks on two "hosts" (the lower half and the upper
// half): shared memory inside each, TCP between them.
func hybridWorld(t testing.TB, n int) []transport.Transport {
	t.Helper()
	tcps := tcpWorld(t, n)
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make([]transport.Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	half := (n + 1) / 2
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local, remote []int
			for p := range n {
				switch {
				case p == r:
				case (p < half) == (r < half):
					local = append(local, p)
				default:
					remote = append(remote, p)
				}
			}
			routes := []hybrid.Route{{Name: "tcp", Transport: tcps[r], Peers: remote}}
			if len(local) > 0 {
				s, err := shm.Dial(ctx, shm.Config{Rank: r, Size: n, Store: store, JobID: t.Name(), Peers: local, RingBytes: 256 << 10,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					errs[r] = err
					return
				}
				routes = append(routes, hybrid.Route{Name: "shm", Transport: s, Peers: local})
			}
			out[r], errs[r] = hybrid.New(r, n, routes...)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	t.Cleanup(func() {
		for _, tr := range out {
			tr.Close()
		}
	})
	return out
}

func TestAllOpsHybrid(t *testing.T) {
	for _, n := range []int{2, 3, 4, 5} {
		t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
			ts := hybridWorld(t, n)
			for _, name := range []string{"latency", "bandwidth"} {
				for _, count := range []int{0, 1, 13, 1031} {
					opts := variants[name]
					opts.Name = fmt.Sprint(name, count)
					checkAllOps(t, ts, count, opts)
				}
			}
		})
	}
}

func TestHybridDeadRankIsNamed(t *testing.T) {
	ts := hybridWorld(t, 4)
	errs := runEach(ts, Options{Timeout: 5 * time.Second, SmallBytes: 1, SegmentBytes: 4096}, func(r int, c *Comm) error {
		buf := make(F32, 1<<16)
		for k := 0; ; k++ {
			if r == 1 && k == 5 {
				crash(ts[1])
				return nil
			}
			if err := c.AllReduce(context.Background(), buf, Sum); err != nil {
				return err
			}
		}
	})
	for _, r := range []int{0, 2, 3} {
		if errs[r] == nil || !strings.Contains(errs[r].Error(), "rank(s) [1] failed") {
			t.Errorf("rank %d: %v, want an error naming rank 1", r, errs[r])
		}
	}
}

// hybridNodes labels hybridWorld's ranks by "host".
func hybridNodes(n int) []string {
	half := (n + 1) / 2
	out := make([]string, n)
	for r := range out {
		out[r] = "lo"
		if r >= half {
			out[r] = "hi"
		}
	}
	return out
}

// The hierarchical all-reduce over shared memory inside two "hosts" and
// TCP between them: every op and dtype right (opsOnRank), results
// bit-identical on every rank and run, and within float regrouping of the
// flat ring's.
func TestHierarchicalAllReduceOverHybrid(t *testing.T) {
	const n = 4
	ts := hybridWorld(t, n)
	for _, count := range []int{0, 1, 13, 1031, 100003} {
		opts := Options{Name: fmt.Sprint("hier", count), SmallBytes: 1, SegmentBytes: 4096, Nodes: hybridNodes(n), HierarchicalBytes: 1}
		checkAllOps(t, ts, count, opts)
	}
	const count = 300007
	rng := rand.New(rand.NewSource(5))
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = make([]float32, count)
		for i := range inputs[r] {
			inputs[r][i] = float32(rng.NormFloat64())
		}
	}
	run := func(name string, nodes []string) [][]float32 {
		res := make([][]float32, n)
		onAll(t, ts, Options{Name: name, SegmentBytes: 64 << 10, Nodes: nodes}, func(r int, c *Comm) error {
			buf := F32(append([]float32(nil), inputs[r]...))
			res[r] = buf
			return c.AllReduce(context.Background(), buf, Sum)
		})
		return res
	}
	first := run("h0", hybridNodes(n))
	again := run("h1", hybridNodes(n))
	flat := run("flat", nil)
	for r := range first {
		for i := range first[r] {
			if math.Float32bits(first[r][i]) != math.Float32bits(first[0][i]) || math.Float32bits(again[r][i]) != math.Float32bits(first[0][i]) {
				t.Fatalf("rank %d element %d: %v / %v, rank 0 first run %v", r, i, first[r][i], again[r][i], first[0][i])
			}
			if d := math.Abs(float64(first[r][i] - flat[r][i])); d > 1e-5*(1+math.Abs(float64(flat[r][i]))) {
				t.Fatalf("element %d: hierarchical %v, flat %v", i, first[r][i], flat[r][i])
			}
		}
	}
}

// Ranks that disagree about the topology are told so, not left hanging.
func TestDisagreeingTopologyIsAMismatch(t *testing.T) {
	ts := loopbackWorld(t, 4)
	ranks := []int{0, 1, 2, 3}
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes := []string{"a", "a", "b", "b"}
			if r == 3 {
				nodes = []string{"a", "b", "a", "b"}
			}
			c, err := New(ts[r], ranks, Options{Timeout: 2 * time.Second, SmallBytes: 1, Nodes: nodes})
			if err != nil {
				errs[r] = err
				return
			}
			defer c.Close()
			errs[r] = c.AllReduce(context.Background(), make(F32, 1000), Sum)
		}()
	}
	wg.Wait()
	var me *MismatchError
	if !errors.As(errs[3], &me) || me.SameGroup {
		t.Fatalf("rank 3: %v, want a mismatch of groups", errs[3])
	}
}

// A steady-state small all-reduce over shared memory allocates nothing
// per call (as over TCP and loopback, alloc_test.go).
func TestShmSmallAllReduceAllocatesNothing(t *testing.T) {
	a := smallAllReduceAllocs(t, shmWorld(t, 2), context.Background())
	t.Logf("%.3f allocations per call", a)
	limit := 0.05
	if raceEnabled {
		limit = 0.25
	}
	if a >= limit {
		t.Errorf("%.3f allocations per 4 KiB all-reduce (both ranks), want 0", a)
	}
}
