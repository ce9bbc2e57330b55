package rdma

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/tcp"
)

// BenchmarkAllReduce measures float32 AllReduce busbw (nccl-tests
// convention: 2(n-1)/n * bytes / time) over the RDMA transport with the
// soft provider, next to the TCP transport in the same run:
//
//	go test -run '^$' -bench AllReduce -benchtime 10x ./transport/rdma/
func BenchmarkAllReduce(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, size := range []int{4 << 10, 1 << 20, 16 << 20, 64 << 20} {
			for _, kind := range []string{"rdma-soft", "tcp"} {
				b.Run(fmt.Sprintf("%s/n%d/%dKiB", kind, n, size>>10), func(b *testing.B) {
					ts := benchWorld(b, kind, n)
					ranks := make([]int, n)
					for i := range ranks {
						ranks[i] = i
					}
					comms := make([]*collective.Comm, n)
					bufs := make([]collective.F32, n)
					for r := range n {
						c, err := collective.New(ts[r], ranks, collective.Options{})
						if err != nil {
							b.Fatal(err)
						}
						defer c.Close()
						comms[r], bufs[r] = c, make(collective.F32, size/4)
					}
					run := func() {
						var wg sync.WaitGroup
						for r := range n {
							wg.Add(1)
							go func() {
								defer wg.Done()
								if err := comms[r].AllReduce(context.Background(), bufs[r], collective.Sum); err != nil {
									b.Error(err)
								}
							}()
						}
						wg.Wait()
					}
					run() // warm up: connections, registrations
					b.ResetTimer()
					start := time.Now()
					for range b.N {
						run()
					}
					per := time.Since(start).Seconds() / float64(b.N)
					b.ReportMetric(2*float64(n-1)/float64(n)*float64(size)/per/1e9, "busbw_GB/s")
				})
			}
		}
	}
}

func benchWorld(b *testing.B, kind string, n int) []transport.Transport {
	store := rendezvous.NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ts := make([]transport.Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if kind == "tcp" {
				ts[r], errs[r] = tcp.Dial(ctx, tcp.Config{Rank: r, Size: n, Store: store, JobID: "bench", Token: "t",
					Bind: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				return
			}
			p, err := ProviderByName("soft")
			if err != nil {
				errs[r] = err
				return
			}
			ts[r], errs[r] = Dial(ctx, Config{Rank: r, Size: n, Store: store, Provider: p})
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			b.Fatalf("rank %d: %v", r, err)
		}
	}
	b.Cleanup(func() {
		for _, t := range ts {
			t.Close()
		}
	})
	return ts
}
