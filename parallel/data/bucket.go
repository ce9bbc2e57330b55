package data

import (
	"context"
	"fmt"
	"math"

	"github.com/strand-ml/strand/collective"
)

// DefaultBucketBytes is PyTorch DDP's default bucket size.
const DefaultBucketBytes = 25 << 20

// Options configure a Bucketer.
type Options struct {
	BucketBytes int  // bucket size in bytes of float32 gradient (default 25 MB)
	BF16        bool // communicate buckets as bfloat16
	ZeRO1       bool // reduce-scatter buckets; each rank owns chunks (see Owned)
	// FP8, when not "", compresses buckets to fp8 ("e4m3" or "e5m2", see
	// fp8.go): all-gathered and summed locally in rank order instead of
	// all-reduced. Exclusive with BF16.
	FP8 string
}

// Bucketer all-reduces (or reduce-scatters) a flat gradient buffer in
// buckets as they become final.
type Bucketer struct {
	comm    *collective.Comm
	grads   []float32
	opts    Options
	bounds  []int // bucket b is grads[bounds[b]:bounds[b+1]]
	next    int   // first bucket not yet started
	handles []*collective.Handle
	wire    [][]uint16 // per-bucket bf16 staging (BF16 only)
	fp8     *fp8Wire   // fp8 staging (FP8 only)
	packErr error      // an fp8 bucket that could not be quantized
	started []bool
	// OnStart, when set, is called as each bucket's communication starts,
	// and OnDone (from another goroutine) as soon as it finishes (tracing).
	OnStart func(bucket, bytes int)
	OnDone  func(bucket int)
}

// NewBucketer prepares buckets over grads for the DP communicator comm.
func NewBucketer(comm *collective.Comm, grads []float32, opts Options) (*Bucketer, error) {
	if opts.BucketBytes == 0 {
		opts.BucketBytes = DefaultBucketBytes
	}
	if opts.BucketBytes < 4 {
		return nil, fmt.Errorf("bucket size %d bytes is too small", opts.BucketBytes)
	}
	if opts.FP8 != "" && opts.BF16 {
		return nil, fmt.Errorf("gradient compression: choose bf16 or fp8, not both")
	}
	per := opts.BucketBytes / 4
	b := &Bucketer{comm: comm, grads: grads, opts: opts}
	for lo := 0; lo < len(grads); lo += per {
		b.bounds = append(b.bounds, lo)
	}
	b.bounds = append(b.bounds, len(grads))
	n := len(b.bounds) - 1
	b.handles = make([]*collective.Handle, n)
	b.started = make([]bool, n)
	if opts.FP8 != "" {
		f, err := ParseFP8(opts.FP8)
		if err != nil {
			return nil, fmt.Errorf("gradient compression: %w", err)
		}
		b.fp8 = newFP8Wire(f, b.bounds, comm.Size())
	}
	if opts.BF16 {
		b.wire = make([][]uint16, n)
		for i := range b.wire {
			b.wire[i] = make([]uint16, b.bounds[i+1]-b.bounds[i])
		}
	}
	return b, nil
}

// Buckets is the number of buckets.
func (b *Bucketer) Buckets() int { return len(b.bounds) - 1 }

// Reset prepares for the next step's backward.
func (b *Bucketer) Reset() {
	b.next = 0
	b.packErr = nil
	clear(b.handles)
	clear(b.started)
}

// Ready starts communication of every bucket that lies entirely within
// grads[:n]. It is the model's GradReady hook.
func (b *Bucketer) Ready(ctx context.Context, n int) {
	for b.next < b.Buckets() && b.bounds[b.next+1] <= n {
		b.start(ctx, b.next)
		b.next++
	}
}

func (b *Bucketer) start(ctx context.Context, i int) {
	g := b.grads[b.bounds[i]:b.bounds[i+1]]
	var buf collective.Buffer = collective.F32(g)
	bytes := 4 * len(g)
	if b.opts.BF16 {
		w := b.wire[i]
		for j, v := range g {
			w[j] = collective.BF16FromFloat32(v)
		}
		buf, bytes = collective.BF16(w), 2*len(g)
	}
	if b.fp8 != nil {
		var err error
		if buf, err = b.fp8.pack(i, b.comm.Rank(), g); err != nil {
			// cannot happen (format checked in NewBucketer, lengths equal by
			// construction); reported by Finish
			b.packErr = fmt.Errorf("gradient bucket %d: %w", i, err)
			return
		}
		bytes = 2 * buf.Len()
	}
	if b.OnStart != nil {
		b.OnStart(i, bytes)
	}
	if b.fp8 != nil {
		// every rank needs every quantized bucket: the sum is local (fp8.go)
		b.handles[i] = b.comm.AllGatherAsync(ctx, buf)
	} else if b.opts.ZeRO1 {
		b.handles[i] = b.comm.ReduceScatterAsync(ctx, buf, collective.Sum)
	} else {
		b.handles[i] = b.comm.AllReduceAsync(ctx, buf, collective.Sum)
	}
	b.started[i] = true
	if b.OnDone != nil {
		h, done := b.handles[i], b.OnDone
		go func() {
			<-h.Done()
			done(i)
		}()
	}
}

// Finish starts any bucket not yet started, waits for all, and (with BF16)
// converts results back to float32. With ZeRO-1 only the owned chunks of
// grads hold reduced values afterwards.
func (b *Bucketer) Finish(ctx context.Context) error {
	b.Ready(ctx, math.MaxInt)
	first := b.packErr
	for i, h := range b.handles {
		if h == nil {
			continue
		}
		err := h.Wait(ctx)
		if err != nil && first == nil {
			first = fmt.Errorf("gradient bucket %d of %d: %w", i, b.Buckets(), err)
		}
		if err == nil && b.fp8 != nil {
			b.fp8.unpack(i, b.comm.Size(), b.grads[b.bounds[i]:b.bounds[i+1]])
		}
		if err == nil && b.opts.BF16 {
			lo, hi := b.ownedRange(i)
			g := b.grads[b.bounds[i]:b.bounds[i+1]]
			for j := lo; j < hi; j++ {
				g[j] = collective.Float32FromBF16(b.wire[i][j])
			}
		}
	}
	return first
}

// ownedRange is the part of bucket i (relative to its start) that holds
// reduced values after Finish: all of it, or this rank's chunk with ZeRO-1.
func (b *Bucketer) ownedRange(i int) (lo, hi int) {
	n := b.bounds[i+1] - b.bounds[i]
	if !b.opts.ZeRO1 {
		return 0, n
	}
	return collective.Chunk(n, b.comm.Size(), b.comm.Rank())
}

// Owned lists the ranges [lo, hi) of the gradient buffer this rank owns
// under ZeRO-1 (every range when ZeRO-1 is off), in order.
func (b *Bucketer) Owned() [][2]int {
	var out [][2]int
	for i := 0; i < b.Buckets(); i++ {
		lo, hi := b.ownedRange(i)
		if hi > lo {
			out = append(out, [2]int{b.bounds[i] + lo, b.bounds[i] + hi})
		}
	}
	return out
}

// GatherParams all-gathers params bucket by bucket after a ZeRO-1 update,
// so every rank holds every updated parameter. A no-op without ZeRO-1.
func (b *Bucketer) GatherParams(ctx context.Context, params []float32) error {
	if !b.opts.ZeRO1 {
		return nil
	}
	hs := make([]*collective.Handle, b.Buckets())
	for i := range hs {
		hs[i] = b.comm.AllGatherAsync(ctx, collective.F32(params[b.bounds[i]:b.bounds[i+1]]))
	}
	for i, h := range hs {
		if err := h.Wait(ctx); err != nil {
			return fmt.Errorf("ZeRO-1 parameter all-gather, bucket %d: %w", i, err)
		}
	}
	return nil
}
