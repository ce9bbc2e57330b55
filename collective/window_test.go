package collective

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
)

// All-reduces through the shared windows give the bits of the message
// path (loopback): small ones recursive doubling's, large ones (pieces
// of 1 KiB here, so many pieces and every slot reused) the ring's, and
// so do reduce-scatters (3 ranks or more); for
// 1-8 ranks, every op and element type, several blocks of the window's
// reduction, signed zeros (min and max pick by operand order) and NaNs.
func TestWindowAllReduceMatchesMessagesToTheBit(t *testing.T) {
	counts := []int{1, 7, 13, 101, 1031, 5003}
	sizes := map[string]Options{"small": {}, "large": {SmallBytes: 1, SegmentBytes: 1000}}
	for n := 1; n <= 8; n++ {
		sw, lw := shmWorld(t, n), loopbackWorld(t, n)
		for _, dt := range []DType{Float32, BFloat16, Float16} {
			for _, op := range []Op{Sum, Avg, Min, Max} {
				for _, count := range counts {
					for size, opts := range sizes {
						rng := rand.New(rand.NewSource(int64(n*1000 + count)))
						inputs := make([][]float32, n)
						for r := range inputs {
							inputs[r] = make([]float32, count)
							for i := range inputs[r] {
								switch rng.Intn(20) {
								case 0:
									inputs[r][i] = float32(math.Copysign(0, -1))
								case 1:
									inputs[r][i] = 0
								case 2:
									inputs[r][i] = float32(math.NaN())
								default:
									inputs[r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(6)-3)))
								}
							}
						}
						name := fmt.Sprintf("n%d-%v-%v-%d-%s", n, dt, op, count, size)
						opts.Name = name
						want := windowRun(t, lw, opts, dt, op, inputs, false, false)
						got := windowRun(t, sw, opts, dt, op, inputs, n > 1, false)
						for r := range got {
							for i := range got[r] {
								if got[r][i] != want[0][i] {
									t.Fatalf("%s rank %d element %d: window %#x, messages %#x", name, r, i, got[r][i], want[0][i])
								}
							}
						}
						if size == "small" || n < minRingWindowRanks {
							continue
						}
						// Reduce-scatter: each rank's chunk, in the ring's order.
						opts.Name += "-rs"
						want = windowRun(t, lw, opts, dt, op, inputs, false, true)
						got = windowRun(t, sw, opts, dt, op, inputs, true, true)
						for r := range got {
							lo, hi := Chunk(count, n, r)
							for i := lo; i < hi; i++ {
								if got[r][i] != want[r][i] {
									t.Fatalf("%s reduce-scatter rank %d element %d: window %#x, messages %#x", name, r, i, got[r][i], want[r][i])
								}
							}
						}
					}
				}
			}
		}
	}
}

// windowRun all-reduces inputs (converted to dt) on ts and returns every
// rank's result as bit patterns; wantWindow asserts the windows were used.
func windowRun(t *testing.T, ts []transport.Transport, opts Options, dt DType, op Op, inputs [][]float32, wantWindow, reduceScatter bool) [][]uint32 {
	t.Helper()
	res := make([][]uint32, len(ts))
	onAll(t, ts, opts, func(r int, c *Comm) error {
		var buf Buffer
		switch dt {
		case Float32:
			buf = F32(append([]float32(nil), inputs[r]...))
		case BFloat16:
			b := make(BF16, len(inputs[r]))
			for i, v := range inputs[r] {
				b[i] = BF16FromFloat32(v)
			}
			buf = b
		case Float16:
			b := make(F16, len(inputs[r]))
			for i, v := range inputs[r] {
				b[i] = F16FromFloat32(v)
			}
			buf = b
		}
		// Twice: the second call reuses the first's window set-up.
		if reduceScatter {
			if err := c.ReduceScatter(context.Background(), buf, op); err != nil {
				return err
			}
		} else {
			for range 2 {
				if err := c.AllReduce(context.Background(), buf, op); err != nil {
					return err
				}
			}
		}
		if wantWindow && c.win == nil {
			return fmt.Errorf("rank %d: no shared window", r)
		}
		out := make([]uint32, buf.Len())
		switch b := buf.(type) {
		case F32:
			for i, v := range b {
				out[i] = math.Float32bits(v)
			}
		case BF16:
			for i, v := range b {
				out[i] = uint32(v)
			}
		case F16:
			for i, v := range b {
				out[i] = uint32(v)
			}
		}
		res[r] = out
		return nil
	})
	return res
}

// A rank that made the first call (the windows are up) and then never
// makes the next is named by the others' timeout: the wait for its stamp
// has the call's deadline.
func TestWindowHungRankIsNamedByTimeout(t *testing.T) {
	ts := shmWorld(t, 3)
	const deadline = 300 * time.Millisecond
	var start time.Time
	var once sync.Once
	flight := NewFlightRecorder(0) // the ranks' entries side by side
	errs := runEach(ts, Options{Timeout: deadline, Flight: flight}, func(r int, c *Comm) error {
		if err := c.AllReduce(context.Background(), make(F32, 8), Sum); err != nil {
			return err
		}
		if c.win == nil {
			return fmt.Errorf("rank %d: no shared window", r)
		}
		once.Do(func() { start = time.Now() })
		if r == 1 {
			return nil // alive but never calls again
		}
		return c.AllReduce(context.Background(), make(F32, 8), Sum)
	})
	wantTimeoutNaming(t, errs, 1, 1, start, deadline)
	// The flight recorder names the rank the waits were for (the step
	// watchdog's "who waits on whom"): no transport call shows it.
	waits := 0
	for _, e := range flight.Entries() {
		if e.Seq == 1 {
			if e.WaitingOn == nil || *e.WaitingOn != 1 {
				t.Errorf("flight entry %+v, want waiting on rank 1", e)
			}
			waits++
		}
	}
	if waits != 2 {
		t.Errorf("%d flight entries of seq 1, want 2", waits)
	}
}

// A rank that crashes between window calls is named by every survivor
// at once (the transport notices, the communicator cancels the wait),
// long before the deadline.
func TestWindowDeadRankIsNamedByEverySurvivor(t *testing.T) {
	ts := shmWorld(t, 4)
	const deadline = 20 * time.Second
	start := time.Now()
	errs := runEach(ts, Options{Timeout: deadline}, func(r int, c *Comm) error {
		buf := make(F32, 100)
		for k := 0; ; k++ {
			if r == 3 && k == 50 {
				crash(ts[3])
				return nil
			}
			if err := c.AllReduce(context.Background(), buf, Sum); err != nil {
				return err
			}
		}
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("survivors took %v", took)
	}
	for r := 0; r < 3; r++ {
		if errs[r] == nil || !strings.Contains(errs[r].Error(), "rank(s) [3] failed") || !strings.Contains(errs[r].Error(), "allreduce seq 50") {
			t.Errorf("rank %d: %v, want allreduce seq 50 naming rank 3", r, errs[r])
		}
	}
}

// Many small async all-reduces in flight at once share the window's
// slots (each waits until its slot's previous occupant was read by
// everyone), interleaved with message calls; every result is right.
func TestWindowAsyncCallsReuseSlots(t *testing.T) {
	const n, calls = 3, 4*winSlots + 3
	ts := shmWorld(t, n)
	onAll(t, ts, Options{}, func(r int, c *Comm) error {
		ctx := context.Background()
		bufs := make([]F32, calls)
		hs := make([]*Handle, calls)
		for k := range calls {
			bufs[k] = make(F32, 10+k)
			for i := range bufs[k] {
				bufs[k][i] = float32(r*1000 + k)
			}
			hs[k] = c.AllReduceAsync(ctx, bufs[k], Sum)
			if k%5 == 4 {
				if err := c.Broadcast(ctx, make(F32, 100), k%n); err != nil { // a message call among them
					return err
				}
			}
		}
		for k, h := range hs {
			if err := h.Wait(ctx); err != nil {
				return err
			}
			want := float32(1000*(n*(n-1)/2) + n*k)
			for i, v := range bufs[k] {
				if v != want {
					return fmt.Errorf("rank %d call %d element %d: %v, want %v", r, k, i, v, want)
				}
			}
		}
		if c.win == nil {
			return fmt.Errorf("rank %d: no shared window", r)
		}
		return nil
	})
}

// Over a hybrid transport a group inside one host shares windows, a group
// spanning hosts exchanges messages (decided alike by every member,
// without a word).
func TestWindowOnlyInsideAHost(t *testing.T) {
	ts := hybridWorld(t, 4) // hosts {0,1} and {2,3}
	errs := runEach(ts, Options{Name: "world"}, func(r int, c *Comm) error {
		buf := F32{float32(r)}
		if err := c.AllReduce(context.Background(), buf, Sum); err != nil {
			return err
		}
		if buf[0] != 6 {
			return fmt.Errorf("rank %d: %v", r, buf[0])
		}
		if c.SharedWindows() {
			return fmt.Errorf("rank %d: a window across hosts", r)
		}
		local := []int{r &^ 1, r | 1}
		lc, err := New(ts[r], local, Options{Name: "host"})
		if err != nil {
			return err
		}
		defer lc.Close()
		if err := lc.AllReduce(context.Background(), buf, Sum); err != nil {
			return err
		}
		if lc.win == nil {
			return fmt.Errorf("rank %d: no window inside its host", r)
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Error(err)
		}
		_ = r
	}
}

// Close unmaps the windows of a communicator with no call in flight, and
// later calls fail instead of touching them.
func TestWindowCloseReleasesAndRefuses(t *testing.T) {
	ts := shmWorld(t, 2)
	errs := runEach(ts, Options{Name: "closing"}, func(r int, c *Comm) error {
		if err := c.AllReduce(context.Background(), make(F32, 10), Sum); err != nil {
			return err
		}
		if !c.SharedWindows() {
			return fmt.Errorf("rank %d: no shared window", r)
		}
		c.Close()
		if c.win != nil {
			return fmt.Errorf("rank %d: windows still mapped after Close", r)
		}
		if err := c.AllReduce(context.Background(), make(F32, 10), Sum); err == nil || !strings.Contains(err.Error(), "closed") {
			return fmt.Errorf("rank %d: a call after Close: %v, want an error", r, err)
		}
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
