package collbench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/rendezvous"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4K": 4096, "64M": 64 << 20, "1G": 1 << 30, "4096": 4096, "16MiB": 16 << 20, "2kb": 2048} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "K", "-1", "4X"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func TestValidateRejectsBadConfigs(t *testing.T) {
	for _, c := range []Config{
		{Op: "gather", NProc: 2, Min: 1, Max: 2},
		{Op: "allreduce", NProc: 0, Min: 1, Max: 2},
		{Op: "allreduce", NProc: 2, Min: 8, Max: 4},
		{Op: "allreduce", NProc: 2, Min: 1, Max: 2, DType: "f64"},
		{Op: "allreduce", NProc: 2, Min: 1, Max: 2, Transport: "rdma"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", c)
		}
	}
}

// TestEveryOpReportsCorrectResults runs the worker of every op on 3 ranks
// in one process and checks rank 0's JSON lines.
func TestEveryOpReportsCorrectResults(t *testing.T) {
	for _, op := range Ops {
		for _, dt := range []string{"f32", "bf16"} {
			t.Run(op+"/"+dt, func(t *testing.T) {
				cfg := Config{Op: op, NProc: 3, Min: 4 << 10, Max: 64 << 10, Factor: 4, DType: dt, Budget: 0.01, JSON: true}
				store := rendezvous.NewMem()
				var out bytes.Buffer
				var wg sync.WaitGroup
				errs := make([]error, cfg.NProc)
				for r := 0; r < cfg.NProc; r++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						w := io.Discard
						if r == 0 {
							w = &out
						}
						errs[r] = work(context.Background(), cfg, r, store, "job", "tok", w, io.Discard)
					}()
				}
				wg.Wait()
				for r, err := range errs {
					if err != nil {
						t.Fatalf("rank %d: %v", r, err)
					}
				}
				lines := strings.Split(strings.TrimSpace(out.String()), "\n")
				if len(lines) != 3 { // 4K, 16K, 64K
					t.Fatalf("got %d lines:\n%s", len(lines), out.String())
				}
				for _, l := range lines {
					var r Result
					if err := json.Unmarshal([]byte(l), &r); err != nil {
						t.Fatal(err)
					}
					if !r.OK || r.TimeUS <= 0 || r.BusBW <= 0 || r.CPUUS <= 0 || r.Count*map[string]int{"f32": 4, "bf16": 2}[dt] != int(r.SizeBytes) {
						t.Errorf("bad result %+v", r)
					}
					if want := r.AlgBW * BusFactor(op, 3); r.BusBW != want {
						t.Errorf("busbw %v, want %v", r.BusBW, want)
					}
				}
			})
		}
	}
}

func TestRanksShareTheCores(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	if got := (&Config{NProc: 2 * runtime.NumCPU()}).rankProcs(); got != 1 {
		t.Errorf("more ranks than cores: GOMAXPROCS %d per rank, want 1", got)
	}
	if got, want := (&Config{NProc: 1}).rankProcs(), runtime.NumCPU(); got != want {
		t.Errorf("one rank: GOMAXPROCS %d, want every core (%d)", got, want)
	}
	if got := (&Config{NProc: 2, Procs: 3}).rankProcs(); got != 3 {
		t.Errorf("explicit --procs 3 gave %d", got)
	}
	t.Setenv("GOMAXPROCS", "2")
	if got := (&Config{NProc: 4}).rankProcs(); got != 0 {
		t.Errorf("GOMAXPROCS in the environment was overridden with %d", got)
	}
}
