package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/loopback"
	"github.com/strand-ml/strand/transport/tcp"
)

// world builds n connected transports.
type world func(t testing.TB, n int) []transport.Transport

func loopbackWorld(t testing.TB, n int) []transport.Transport {
	var out []transport.Transport
	for _, tr := range loopback.New(n) {
		out = append(out, tr)
	}
	return out
}

func tcpWorld(t testing.TB, n int) []transport.Transport {
	t.Helper()
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make([]transport.Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := tcp.Dial(ctx, tcp.Config{Rank: r, Size: n, Store: store, JobID: t.Name(), Token: "t", Bind: "127.0.0.1:0",
				SplitBytes: 256, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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

// onAll runs f on every rank of a fresh group over ts and fails the test
// on any error.
func onAll(t *testing.T, ts []transport.Transport, opts Options, f func(r int, c *Comm) error) {
	t.Helper()
	n := len(ts)
	ranks := make([]int, n)
	for i := range ranks {
		ranks[i] = i
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := New(ts[r], ranks, opts)
			if err != nil {
				errs[r] = err
				return
			}
			defer c.Close()
			errs[r] = f(r, c)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// val is rank r's element i: small integers, so every sum is exact in
// float32, bfloat16 and float16.
func val(r, i int) float32 { return float32((r+1)%7 + i%5) }

func reference(op Op, n, i int) float32 {
	acc := val(0, i)
	for r := 1; r < n; r++ {
		acc = combine(op, acc, val(r, i))
	}
	if op == Avg {
		acc /= float32(n)
	}
	return acc
}

// typed makes a buffer of dt holding vals and a reader back to float32.
func typed(dt DType, vals []float32) (Buffer, func(i int) float32) {
	switch dt {
	case BFloat16:
		b := make(BF16, len(vals))
		for i, v := range vals {
			b[i] = BF16FromFloat32(v)
		}
		return b, func(i int) float32 { return Float32FromBF16(b[i]) }
	case Float16:
		b := make(F16, len(vals))
		for i, v := range vals {
			b[i] = F16FromFloat32(v)
		}
		return b, func(i int) float32 { return Float32FromF16(b[i]) }
	}
	b := F32(append([]float32(nil), vals...))
	return b, func(i int) float32 { return b[i] }
}

func rankVals(r, count int) []float32 {
	v := make([]float32, count)
	for i := range v {
		v[i] = val(r, i)
	}
	return v
}

func roundTo(dt DType, f float32) float32 {
	switch dt {
	case BFloat16:
		return Float32FromBF16(BF16FromFloat32(f))
	case Float16:
		return Float32FromF16(F16FromFloat32(f))
	}
	return f
}

var variants = map[string]Options{
	"latency":   {SmallBytes: 1 << 30},             // recursive doubling, trees
	"bandwidth": {SmallBytes: 1, SegmentBytes: 12}, // rings and chains, several segments
}

// checkAllOps runs every collective once on n ranks with count elements
// and checks every rank's result.
func checkAllOps(t *testing.T, ts []transport.Transport, count int, opts Options) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	onAll(t, ts, opts, func(r int, c *Comm) error { return opsOnRank(ctx, c, count) })
}

// opsOnRank is one rank's part of checkAllOps (also run by child processes).
func opsOnRank(ctx context.Context, c *Comm, count int) error {
	r, n := c.Rank(), c.Size()
	{
		for _, dt := range []DType{Float32, BFloat16, Float16} {
			for _, op := range []Op{Sum, Avg, Min, Max} {
				buf, get := typed(dt, rankVals(r, count))
				if err := c.AllReduce(ctx, buf, op); err != nil {
					return err
				}
				for i := 0; i < count; i++ {
					if want := roundTo(dt, reference(op, n, i)); get(i) != want {
						return fmt.Errorf("allreduce %v %v: element %d = %v, want %v", dt, op, i, get(i), want)
					}
				}
			}
			buf, get := typed(dt, rankVals(r, count))
			if err := c.ReduceScatter(ctx, buf, Sum); err != nil {
				return err
			}
			lo, hi := c.Chunk(count)
			for i := lo; i < hi; i++ {
				if want := reference(Sum, n, i); get(i) != want {
					return fmt.Errorf("reducescatter %v: element %d = %v, want %v", dt, i, get(i), want)
				}
			}
			buf, get = typed(dt, rankVals(r, count))
			if err := c.AllGather(ctx, buf); err != nil {
				return err
			}
			for owner := 0; owner < n; owner++ {
				lo, hi := Chunk(count, n, owner)
				for i := lo; i < hi; i++ {
					if want := val(owner, i); get(i) != want {
						return fmt.Errorf("allgather %v: element %d = %v, want rank %d's %v", dt, i, get(i), owner, want)
					}
				}
			}
		}
		for _, root := range []int{0, n - 1} {
			buf := F32(rankVals(r, count))
			if err := c.Broadcast(ctx, buf, root); err != nil {
				return err
			}
			for i := range buf {
				if buf[i] != val(root, i) {
					return fmt.Errorf("broadcast root %d: element %d = %v, want %v", root, i, buf[i], val(root, i))
				}
			}
			buf = F32(rankVals(r, count))
			if err := c.Reduce(ctx, buf, Max, root); err != nil {
				return err
			}
			if r == root {
				for i := range buf {
					if want := reference(Max, n, i); buf[i] != want {
						return fmt.Errorf("reduce root %d: element %d = %v, want %v", root, i, buf[i], want)
					}
				}
			}
		}
		if err := c.Barrier(ctx); err != nil {
			return err
		}
		in, out := F32(rankVals(r, count*n)), make(F32, count*n)
		if err := c.AllToAll(ctx, in, out); err != nil {
			return err
		}
		for from := 0; from < n; from++ {
			for j := 0; j < count; j++ {
				if want := val(from, r*count+j); out[from*count+j] != want {
					return fmt.Errorf("alltoall: block from %d element %d = %v, want %v", from, j, out[from*count+j], want)
				}
			}
		}
		if n > 1 { // a ring of point-to-point messages
			send, recv := F32(rankVals(r, count)), make(F32, count)
			h := c.SendAsync(ctx, send, mod(r+1, n))
			if err := c.Recv(ctx, recv, mod(r-1, n)); err != nil {
				return err
			}
			if err := h.Wait(ctx); err != nil {
				return err
			}
			for i := range recv {
				if recv[i] != val(mod(r-1, n), i) {
					return fmt.Errorf("recv element %d = %v", i, recv[i])
				}
			}
		}
		return nil
	}
}

var testCounts = []int{0, 1, 2, 7, 13, 101}

func TestAllOpsLoopback(t *testing.T) {
	for n := 1; n <= 8; n++ {
		for name, opts := range variants {
			for _, count := range testCounts {
				t.Run(fmt.Sprintf("n%d/%s/count%d", n, name, count), func(t *testing.T) {
					checkAllOps(t, loopbackWorld(t, n), count, opts)
				})
			}
		}
	}
}

// TestAllOpsTCP runs in one process over real sockets; 1..8 ranks over
// TCP are covered across processes by TestAllOpsAcrossProcesses.
func TestAllOpsTCP(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		t.Run(fmt.Sprintf("n%d", n), func(t *testing.T) {
			ts := tcpWorld(t, n)
			for name, opts := range variants {
				for _, count := range []int{0, 13, 1031} {
					opts.Name = fmt.Sprint(name, count) // a fresh communicator each time
					checkAllOps(t, ts, count, opts)
				}
			}
		})
	}
}

func TestResultsAreBitIdenticalAcrossRanksAndRuns(t *testing.T) {
	const n, count = 5, 10007
	rng := rand.New(rand.NewSource(1))
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = make([]float32, count)
		for i := range inputs[r] {
			inputs[r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(6)-3)))
		}
	}
	for name, opts := range variants {
		opts.SegmentBytes = 4096
		var first []float32
		for run := 0; run < 3; run++ {
			results := make([][]float32, n)
			onAll(t, loopbackWorld(t, n), opts, func(r int, c *Comm) error {
				buf := F32(append([]float32(nil), inputs[r]...))
				results[r] = buf
				return c.AllReduce(context.Background(), buf, Sum)
			})
			if first == nil {
				first = results[0]
			}
			for r := range results {
				for i := range results[r] {
					if math.Float32bits(results[r][i]) != math.Float32bits(first[i]) {
						t.Fatalf("%s run %d rank %d element %d: %v, first run rank 0 had %v", name, run, r, i, results[r][i], first[i])
					}
				}
			}
		}
	}
}

func TestGroupsAndAsyncCallsDoNotInterfere(t *testing.T) {
	const n = 4
	ts := tcpWorld(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = func() error {
				world, err := New(ts[r], []int{0, 1, 2, 3}, Options{Name: "world", SegmentBytes: 64})
				if err != nil {
					return err
				}
				defer world.Close()
				// Two pair groups, like DP groups of a 2x2 mesh, in reversed group order.
				pair, err := New(ts[r], [][]int{{1, 0}, {3, 2}}[r/2], Options{Name: "pair", SegmentBytes: 64})
				if err != nil {
					return err
				}
				defer pair.Close()
				var hs []*Handle
				var bufs []F32
				for k := 0; k < 6; k++ {
					b := F32(rankVals(r+k, 1000))
					bufs = append(bufs, b)
					if k%2 == 0 {
						hs = append(hs, world.AllReduceAsync(ctx, b, Sum))
					} else {
						hs = append(hs, pair.AllReduceAsync(ctx, b, Sum))
					}
				}
				for k, h := range hs {
					if err := h.Wait(ctx); err != nil {
						return err
					}
					members := []int{0, 1, 2, 3}
					if k%2 == 1 {
						members = []int{r / 2 * 2, r/2*2 + 1}
					}
					for i, got := range bufs[k] {
						var want float32
						for _, m := range members {
							want += val(m+k, i)
						}
						if got != want {
							return fmt.Errorf("call %d element %d = %v, want %v", k, i, got, want)
						}
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// runEach runs f on every rank and returns the errors (without failing).
func runEach(ts []transport.Transport, opts Options, f func(r int, c *Comm) error) []error {
	n := len(ts)
	ranks := make([]int, n)
	for i := range ranks {
		ranks[i] = i
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := New(ts[r], ranks, opts)
			if err != nil {
				errs[r] = err
				return
			}
			defer c.Close()
			errs[r] = f(r, c)
		}()
	}
	wg.Wait()
	return errs
}

func TestMismatchedCallNamesBothRanksAndCalls(t *testing.T) {
	for _, w := range []struct {
		name string
		mk   world
	}{{"loopback", loopbackWorld}, {"tcp", tcpWorld}} {
		t.Run(w.name, func(t *testing.T) {
			ts := w.mk(t, 4)
			errs := runEach(ts, Options{Timeout: time.Second}, func(r int, c *Comm) error {
				ctx := context.Background()
				if err := c.AllReduce(ctx, make(F32, 10), Sum); err != nil { // seq 0 agrees
					return err
				}
				if r == 2 {
					return c.AllReduce(ctx, make(F32, 11), Sum) // wrong size
				}
				return c.AllReduce(ctx, make(F32, 10), Sum)
			})
			var me *MismatchError
			if !errors.As(errs[2], &me) {
				t.Fatalf("rank 2: %v, want a MismatchError", errs[2])
			}
			msg := errs[2].Error()
			for _, want := range []string{"allreduce seq 1", "rank 2 called allreduce(count=11, f32, sum) seq 1", "allreduce(count=10, f32, sum) seq 1"} {
				if !strings.Contains(msg, want) {
					t.Errorf("rank 2 error %q lacks %q", msg, want)
				}
			}
			if me.PeerRank != 1 && me.PeerRank != 3 {
				t.Errorf("peer rank %d is not a neighbour of 2", me.PeerRank)
			}
			// The neighbours see the mismatch too, naming rank 2.
			for _, r := range []int{1, 3} {
				if !errors.As(errs[r], &me) || me.PeerRank != 2 {
					t.Errorf("rank %d: %v, want a MismatchError naming rank 2", r, errs[r])
				}
			}
		})
	}
}

func TestDeadRankIsNamedByEverySurvivor(t *testing.T) {
	for _, w := range []struct {
		name string
		mk   world
	}{{"loopback", loopbackWorld}, {"tcp", tcpWorld}} {
		t.Run(w.name, func(t *testing.T) {
			ts := w.mk(t, 4)
			const deadline = 5 * time.Second
			start := time.Now()
			errs := runEach(ts, Options{Timeout: deadline, SmallBytes: 1, SegmentBytes: 4096}, func(r int, c *Comm) error {
				buf := make(F32, 1<<16)
				for k := 0; ; k++ {
					if r == 3 && k == 5 {
						crash(ts[3]) // dies between calls, while the others are in call 5
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
			// Rank 3 finished call 4 before dying, but a survivor may still
			// be in call 4 (waiting for data that depends on nobody dead):
			// a member's death aborts every call in flight.
			for r := 0; r < 3; r++ {
				if errs[r] == nil || !strings.Contains(errs[r].Error(), "rank(s) [3] failed") ||
					!(strings.Contains(errs[r].Error(), "allreduce seq 5") || strings.Contains(errs[r].Error(), "allreduce seq 4")) {
					t.Errorf("rank %d: %v, want an error naming allreduce seq 4 or 5 and rank 3", r, errs[r])
				}
			}
		})
	}
}

// wantTimeoutNaming checks that the all-reduce of sequence number seq
// timed out on every rank but missing, naming missing, within a second of
// its deadline (counted from start).
func wantTimeoutNaming(t *testing.T, errs []error, seq, missing int, start time.Time, deadline time.Duration) {
	t.Helper()
	if took := time.Since(start); took > deadline+time.Second {
		t.Errorf("took %v with a %v deadline", took, deadline)
	}
	for r, err := range errs {
		if r == missing {
			continue
		}
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("allreduce seq %d: timed out", seq)) || !strings.Contains(err.Error(), fmt.Sprintf("%d]", missing)) {
			t.Errorf("rank %d: %v, want a timeout of seq %d naming rank %d", r, err, seq, missing)
		}
	}
}

func TestTimeoutNamesTheMissingRank(t *testing.T) {
	ts := loopbackWorld(t, 3)
	const deadline = 300 * time.Millisecond
	start := time.Now()
	errs := runEach(ts, Options{Timeout: deadline}, func(r int, c *Comm) error {
		if r == 1 {
			return nil // alive but never calls
		}
		return c.AllReduce(context.Background(), make(F32, 8), Sum)
	})
	wantTimeoutNaming(t, errs, 0, 1, start, deadline)
	// The communicator is now unusable, and says why.
	c, _ := New(ts[0], []int{0, 1, 2}, Options{})
	defer c.Close()
	_ = ts[2].Close()
	time.Sleep(10 * time.Millisecond)
	if err := c.AllReduce(context.Background(), make(F32, 1), Sum); err == nil || !strings.Contains(err.Error(), "rank(s) [2] failed") {
		t.Errorf("call after a member died: %v", err)
	}
}

func TestBadInputIsAnErrorNotAPanic(t *testing.T) {
	ts := loopbackWorld(t, 2)
	c, err := New(ts[0], []int{0, 1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for name, err := range map[string]error{
		"op":     c.AllReduce(ctx, make(F32, 1), Op(0)),
		"root":   c.Broadcast(ctx, make(F32, 1), 2),
		"nil":    c.AllGather(ctx, nil),
		"a2a":    c.AllToAll(ctx, make(F32, 3), make(F32, 3)),
		"a2a-dt": c.AllToAll(ctx, make(F32, 2), make(BF16, 2)),
		"peer":   c.Send(ctx, make(F32, 1), 0),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, ranks := range [][]int{{}, {0, 0}, {1, 5}, {1}} {
		if _, err := New(ts[0], ranks, Options{}); err == nil {
			t.Errorf("New(%v) succeeded", ranks)
		}
	}
}

func TestSixteenBitConversions(t *testing.T) {
	for _, f := range []float32{0, 1, -2.5, 65504, 1e-7, 3.14159, float32(math.Inf(-1)), 6.1e-5, 5.96e-8} {
		if g := Float32FromF16(F16FromFloat32(f)); math.Abs(float64(g-f)) > math.Abs(float64(f))/1000+6e-8 {
			t.Errorf("f16 round trip %v -> %v", f, g)
		}
		if g := Float32FromBF16(BF16FromFloat32(f)); math.Abs(float64(g-f)) > math.Abs(float64(f))/128 {
			t.Errorf("bf16 round trip %v -> %v", f, g)
		}
	}
	if F16FromFloat32(70000) != 0x7c00 || !math.IsNaN(float64(Float32FromF16(F16FromFloat32(float32(math.NaN()))))) {
		t.Error("f16 overflow or NaN wrong")
	}
	// Every half converts to float32 and back exactly.
	for h := 0; h < 1<<16; h++ {
		f := Float32FromF16(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if back := F16FromFloat32(f); back != uint16(h) {
			t.Fatalf("half %#04x -> %v -> %#04x", h, f, back)
		}
	}
	// Ties round to even: 1 + 2^-11 is halfway between 1 and 1+2^-10.
	if F16FromFloat32(1+1.0/2048) != 0x3c00 || BF16FromFloat32(1+1.0/256) != 0x3f80 {
		t.Error("ties do not round to even")
	}
}

// crash kills a transport the way a dying process would: without the
// goodbye a clean Close sends.
func crash(tr transport.Transport) {
	if a, ok := tr.(interface{ Abort() error }); ok {
		a.Abort()
		return
	}
	tr.Close()
}

// TestTCPChunkedReduceMatchesLoopbackToTheBit: over TCP the reducing
// receives are combined chunk by chunk as bytes arrive (split over two
// sockets); the result must equal, bit for bit, the loopback transport's
// (which stages whole segments), for every op.
func TestTCPChunkedReduceMatchesLoopbackToTheBit(t *testing.T) {
	const n, count = 3, 3<<18 + 5 // several 1 MiB segments per chunk, split across streams
	rng := rand.New(rand.NewSource(2))
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = make([]float32, count)
		for i := range inputs[r] {
			inputs[r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(6)-3)))
		}
	}
	tcp := tcpWorld(t, n)
	for k, op := range []Op{Sum, Avg, Max} {
		var results [2][][]float32
		for w, ts := range [][]transport.Transport{loopbackWorld(t, n), tcp} {
			results[w] = make([][]float32, n)
			onAll(t, ts, Options{Name: fmt.Sprint("bits", k)}, func(r int, c *Comm) error {
				buf := F32(append([]float32(nil), inputs[r]...))
				results[w][r] = buf
				return c.AllReduce(context.Background(), buf, op)
			})
		}
		for r := 0; r < n; r++ {
			for i := range results[1][r] {
				if math.Float32bits(results[1][r][i]) != math.Float32bits(results[0][0][i]) {
					t.Fatalf("%v rank %d element %d: tcp %v, loopback %v", op, r, i, results[1][r][i], results[0][0][i])
				}
			}
		}
	}
}

// TestRingAllocatesPerCallNotPerSegment: over TCP, an all-reduce cut into
// 16x more segments (messages) allocates no more than a short one, so the
// hot path (send, chunked receive-and-reduce, posted receives) allocates
// nothing per message; and a small (latency-path) call stays under a fixed
// per-call budget.
func TestRingAllocatesPerCallNotPerSegment(t *testing.T) {
	ts := tcpWorld(t, 2)
	cs := make([]*Comm, 2)
	for r := range cs {
		c, err := New(ts[r], []int{0, 1}, Options{Name: "allocs", SmallBytes: 8 << 10, SegmentBytes: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		cs[r] = c
		t.Cleanup(func() { c.Close() })
	}
	allocs := func(count int) float64 {
		bufs := []F32{make(F32, count), make(F32, count)}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		errs := make(chan error, 1)
		once := func() {
			go func() { errs <- cs[1].AllReduce(ctx, bufs[1], Sum) }()
			if err := cs[0].AllReduce(ctx, bufs[0], Sum); err != nil {
				t.Fatal(err)
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 30; i++ { // warm the pools and the plan cache
			once()
		}
		return testing.AllocsPerRun(50, once)
	}
	small := allocs(1 << 10)  // 4 KiB: recursive doubling, inline
	short := allocs(16 << 10) // 64 KiB: 2 segments per chunk
	long := allocs(256 << 10) // 1 MiB: 32 segments per chunk
	t.Logf("allocations per call (both ranks): 4 KiB %.1f, 64 KiB %.1f, 1 MiB %.1f", small, short, long)
	if long > short+4 {
		t.Errorf("1 MiB all-reduce allocates %.1f times, 64 KiB %.1f: something allocates per segment", long, short)
	}
	if small > 40 {
		t.Errorf("4 KiB all-reduce allocates %.1f times per call (both ranks), budget 40", small)
	}
}
