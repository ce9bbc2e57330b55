package rdma

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/transport"
)

// A compact conformance suite: the collectives a training job needs
// (ring AllReduce, AllGather, Broadcast, Barrier), written directly
// against transport.Transport and run over the RDMA transport with the
// soft provider for 2, 3 and 4 ranks, eager and rendezvous sizes.

// sendRecv sends out to `to` while receiving in from `from`, concurrently
// (as a ring step does), and returns the first error.
func sendRecv(ctx context.Context, tr transport.Transport, to int, out []byte, from int, in []byte, tag transport.Tag) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		err := tr.Send(ctx, to, tag, out)
		if err != nil {
			cancel()
		}
		errc <- err
	}()
	rerr := tr.Recv(ctx, from, tag, in)
	if rerr != nil {
		cancel()
	}
	serr := <-errc
	if serr != nil && (rerr == nil || errors.Is(rerr, context.Canceled)) {
		return serr
	}
	return rerr
}

func chunk(count, n, i int) (int, int) {
	q, r := count/n, count%n
	lo := i*q + min(i, r)
	hi := lo + q
	if i < r {
		hi++
	}
	return lo, hi
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// ringAllReduce sums data across all ranks (reduce-scatter then
// all-gather around the ring).
func ringAllReduce(ctx context.Context, tr transport.Transport, data []float32) error {
	n, r := tr.Size(), tr.Rank()
	right, left := (r+1)%n, (r+n-1)%n
	for s := range n - 1 { // reduce-scatter
		slo, shi := chunk(len(data), n, (r-s+n)%n)
		rlo, rhi := chunk(len(data), n, (r-s-1+2*n)%n)
		in := make([]byte, 4*(rhi-rlo))
		if err := sendRecv(ctx, tr, right, f32bytes(data[slo:shi]), left, in, 1); err != nil {
			return fmt.Errorf("reduce-scatter step %d: %w", s, err)
		}
		for i := range rhi - rlo {
			data[rlo+i] += math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:]))
		}
	}
	for s := range n - 1 { // all-gather
		slo, shi := chunk(len(data), n, (r-s+1+n)%n)
		rlo, rhi := chunk(len(data), n, (r-s+n)%n)
		in := make([]byte, 4*(rhi-rlo))
		if err := sendRecv(ctx, tr, right, f32bytes(data[slo:shi]), left, in, 2); err != nil {
			return fmt.Errorf("all-gather step %d: %w", s, err)
		}
		for i := range rhi - rlo {
			data[rlo+i] = math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:]))
		}
	}
	return nil
}

// broadcast copies root's buf to every rank (root sends to each peer).
func broadcast(ctx context.Context, tr transport.Transport, root int, buf []byte) error {
	if tr.Rank() != root {
		return tr.Recv(ctx, root, 3, buf)
	}
	for p := range tr.Size() {
		if p != root {
			if err := tr.Send(ctx, p, 3, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// allGather: every rank's block goes to every rank (direct exchange).
func allGather(ctx context.Context, tr transport.Transport, blocks [][]byte) error {
	n, r := tr.Size(), tr.Rank()
	for d := 1; d < n; d++ {
		to, from := (r+d)%n, (r-d+n)%n
		if err := sendRecv(ctx, tr, to, blocks[r], from, blocks[from], 4); err != nil {
			return err
		}
	}
	return nil
}

// barrier: dissemination barrier with zero-length messages.
func barrier(ctx context.Context, tr transport.Transport) error {
	n, r := tr.Size(), tr.Rank()
	for d := 1; d < n; d *= 2 {
		if err := sendRecv(ctx, tr, (r+d)%n, nil, (r-d+n)%n, nil, 5); err != nil {
			return err
		}
	}
	return nil
}

// onAll runs f on every rank concurrently and returns the errors by rank.
func onAll(ts []*Transport, f func(r int, tr *Transport) error) []error {
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for r, tr := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(r, tr)
		}()
	}
	wg.Wait()
	return errs
}

func TestCollectivesOverSoftRDMA(t *testing.T) {
	for _, n := range []int{2, 3} {
		for _, count := range []int{7, 1 << 17} { // eager, rendezvous
			t.Run(fmt.Sprintf("ranks=%d/count=%d", n, count), func(t *testing.T) {
				ts, _ := group(t, n, nil)
				ctx := ctxT(t, 30*time.Second)
				errs := onAll(ts, func(r int, tr *Transport) error {
					data := make([]float32, count)
					for i := range data {
						data[i] = float32(r*1000 + i%977)
					}
					for round := range 2 { // twice: buffers and registrations are reused
						if round == 1 {
							for i := range data {
								data[i] = float32(r*1000 + i%977)
							}
						}
						if err := ringAllReduce(ctx, tr, data); err != nil {
							return fmt.Errorf("allreduce: %w", err)
						}
						for i, v := range data {
							want := float32(n*(n-1)/2*1000 + n*(i%977))
							if v != want {
								return fmt.Errorf("allreduce round %d: element %d = %v, want %v", round, i, v, want)
							}
						}
					}
					bbuf := make([]byte, 4*count)
					if r == n-1 {
						copy(bbuf, pattern(4*count, 5))
					}
					if err := broadcast(ctx, tr, n-1, bbuf); err != nil {
						return fmt.Errorf("broadcast: %w", err)
					}
					if string(bbuf) != string(pattern(4*count, 5)) {
						return errors.New("broadcast: wrong bytes")
					}
					blocks := make([][]byte, n)
					for i := range blocks {
						blocks[i] = make([]byte, count)
					}
					copy(blocks[r], pattern(count, r))
					if err := allGather(ctx, tr, blocks); err != nil {
						return fmt.Errorf("allgather: %w", err)
					}
					for i := range blocks {
						if string(blocks[i]) != string(pattern(count, i)) {
							return fmt.Errorf("allgather: block %d wrong", i)
						}
					}
					if err := barrier(ctx, tr); err != nil {
						return fmt.Errorf("barrier: %w", err)
					}
					return nil
				})
				for r, err := range errs {
					if err != nil {
						t.Errorf("rank %d: %v", r, err)
					}
				}
			})
		}
	}
}
