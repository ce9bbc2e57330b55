package collective

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkAllReduceTCP: 2 ranks in one process over loopback TCP. Only a
// profiling aid; `strand bench collective` is the real benchmark.
func BenchmarkAllReduceTCP(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20, 4 << 20, 16 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			ts := tcpWorld(b, 2)
			cs := make([]*Comm, 2)
			for r := range cs {
				cs[r], _ = New(ts[r], []int{0, 1}, Options{})
			}
			bufs := []F32{make(F32, size/4), make(F32, size/4)}
			b.SetBytes(int64(size))
			b.ResetTimer()
			var wg sync.WaitGroup
			for r := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < b.N; i++ {
						if err := cs[r].AllReduce(context.Background(), bufs[r], Sum); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			for r := range cs {
				cs[r].Close()
			}
		})
	}
}

// BenchmarkAllReduceShmSmall: a 4 KiB all-reduce, 2 ranks in one process
// over shared memory (the latency path), through the shared windows and
// through messages. A profiling aid only.
func BenchmarkAllReduceShmSmall(b *testing.B) {
	for _, path := range []string{"window", "messages"} {
		b.Run(path, func(b *testing.B) { benchShmSmall(b, Options{NoSharedMemory: path == "messages"}) })
	}
}

func benchShmSmall(b *testing.B, opts Options) {
	ts := shmWorld(b, 2)
	cs := make([]*Comm, 2)
	for r := range cs {
		cs[r], _ = New(ts[r], []int{0, 1}, opts)
	}
	bufs := []F32{make(F32, 1024), make(F32, 1024)}
	b.ResetTimer()
	var wg sync.WaitGroup
	for r := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < b.N; i++ {
				if err := cs[r].AllReduce(context.Background(), bufs[r], Sum); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	for r := range cs {
		cs[r].Close()
	}
}
