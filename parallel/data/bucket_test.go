package data

import (
	"context"
	"sync"
	"testing"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/transport/loopback"
)

// TestBucketsSumAndZeROPartition all-reduces a buffer bucket by bucket as
// "backward" reports prefixes, and checks that ZeRO-1 owned ranges
// partition the buffer across ranks.
func TestBucketsSumAndZeROPartition(t *testing.T) {
	const n, ranks = 1000, 3
	for _, zero := range []bool{false, true} {
		trs := loopback.New(ranks)
		owned := make([][][2]int, ranks)
		results := make([][]float32, ranks)
		var wg sync.WaitGroup
		for r := 0; r < ranks; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				comm, err := collective.New(trs[r], []int{0, 1, 2}, collective.Options{Name: "dp"})
				if err != nil {
					t.Error(err)
					return
				}
				g := make([]float32, n)
				for i := range g {
					g[i] = float32(r + 1)
				}
				b, err := NewBucketer(comm, g, Options{BucketBytes: 4 * 128, ZeRO1: zero})
				if err != nil {
					t.Error(err)
					return
				}
				ctx := context.Background()
				for _, ready := range []int{100, 300, 301, 999} {
					b.Ready(ctx, ready)
				}
				if err := b.Finish(ctx); err != nil {
					t.Error(err)
					return
				}
				owned[r], results[r] = b.Owned(), g
			}()
		}
		wg.Wait()
		cover := make([]int, n)
		for r := 0; r < ranks; r++ {
			for _, rg := range owned[r] {
				for i := rg[0]; i < rg[1]; i++ {
					cover[i]++
					if results[r][i] != 6 {
						t.Fatalf("zero=%v rank %d element %d = %g, want 1+2+3", zero, r, i, results[r][i])
					}
				}
			}
		}
		want := ranks
		if zero {
			want = 1
		}
		for i, c := range cover {
			if c != want {
				t.Fatalf("zero=%v: element %d owned %d times, want %d", zero, i, c, want)
			}
		}
	}
}
