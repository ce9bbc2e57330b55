package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/coordinator"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
)

// joinWith joins every rank of mesh m in-process with the given
// --transport and per-rank host identities ("" keeps the real one).
func joinWith(t *testing.T, m mesh.Mesh, tr string, hosts []string) ([]*Runtime, []error) {
	t.Helper()
	srv, err := coordinator.Start(coordinator.Config{Addr: "127.0.0.1:0", Mesh: m, Token: "tok", JobID: "sel", JoinTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	n := m.World()
	rts := make([]*Runtime, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		env := map[string]string{
			jobenv.Coordinator: srv.Addr(), jobenv.Token: "tok", jobenv.JobID: "sel", jobenv.Rank: strconv.Itoa(r),
			jobenv.LocalRank: strconv.Itoa(r), jobenv.WorldSize: strconv.Itoa(n),
			jobenv.Mesh: jobenv.FormatMesh(m.DP, m.TP, m.PP), jobenv.Transport: tr, hostIDEnv: hosts[r],
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rts[r], errs[r] = Join(ctx, Options{Getenv: func(k string) string { return env[k] }, Stderr: io.Discard, HeartbeatInterval: 50 * time.Millisecond})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, rt := range rts {
			if rt != nil {
				rt.close()
			}
		}
	})
	return rts, errs
}

// Two "hosts" of two ranks: auto uses shared memory inside each and TCP
// between them, and the world all-reduce over both routes is right.
func TestAutoRoutesSharedMemoryInsideHosts(t *testing.T) {
	rts, errs := joinWith(t, mesh.Mesh{DP: 4, TP: 1, PP: 1}, "auto", []string{"a", "a", "b", "b"})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r, rt := range rts {
		for p := range rts {
			want := "tcp"
			if p == r {
				want = ""
			} else if p/2 == r/2 {
				want = "shm"
			}
			if got := rt.RouteOf(p); got != want {
				t.Errorf("rank %d to %d: %q, want %q", r, p, got, want)
			}
		}
		if rt.TransportName != "shm+tcp" {
			t.Errorf("rank %d: transport %q", r, rt.TransportName)
		}
	}
	if s := rts[0].RouteSummary(); s != "rank 0: shm to [1], tcp to [2 3]" {
		t.Errorf("summary %q", s)
	}
	// The traffic counter keeps the capabilities the fast receive paths need.
	if c := rts[0].Transport.Caps(); !c.ChunkedRecv || !c.PostedRecv || !c.BatchedSend || !c.Notifies {
		t.Errorf("the world transport %T hides capabilities: %+v", rts[0].Transport, c)
	}
	var wg sync.WaitGroup
	res := make([]error, len(rts))
	for r, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]float32, 100003)
			for i := range buf {
				buf[i] = float32(r + i%3)
			}
			if res[r] = rt.World.AllReduce(rt.Context(), collective.F32(buf), collective.Sum); res[r] == nil && buf[100002] != float32(6+4*(100002%3)) {
				res[r] = errors.New("wrong sum " + strconv.Itoa(int(buf[100002])))
			}
		}()
	}
	wg.Wait()
	for r, err := range res {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// One host: auto is shared memory for every pair.
func TestAutoOnOneHostIsSharedMemory(t *testing.T) {
	rts, errs := joinWith(t, mesh.Mesh{DP: 3, TP: 1, PP: 1}, "auto", []string{"", "", ""})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r, rt := range rts {
		if rt.TransportName != "shm" {
			t.Errorf("rank %d: transport %q, want shm", r, rt.TransportName)
		}
	}
}

// --transport shm across hosts fails, naming a pair that cannot share.
func TestForcedSharedMemoryNamesThePair(t *testing.T) {
	// Every rank fails; the first to fail names the pair (the others
	// may hear of the job's failure from the coordinator first).
	_, errs := joinWith(t, mesh.Mesh{DP: 3, TP: 1, PP: 1}, "shm", []string{"a", "a", "b"})
	named := 0
	for r, err := range errs {
		if err == nil {
			t.Errorf("rank %d joined", r)
		} else if strings.Contains(err.Error(), "--transport shm: ranks 0 and 2 cannot share memory") {
			named++
		}
	}
	if named == 0 {
		t.Errorf("no rank named the pair: %v", errs)
	}
}

// A group spanning two "hosts" gets the node layout, so its large
// all-reduces are hierarchical; the result is right.
func TestGroupsGetNodeLabels(t *testing.T) {
	rts, errs := joinWith(t, mesh.Mesh{DP: 4, TP: 1, PP: 1}, "auto", []string{"a", "a", "b", "b"})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	if got := fmt.Sprint(rts[0].nodeLabels([]int{0, 1, 2, 3})); got != "[a a b b]" {
		t.Fatalf("labels %s", got)
	}
	var wg sync.WaitGroup
	res := make([]error, len(rts))
	for r, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]float32, 1<<20)
			for i := range buf {
				buf[i] = float32(r*10 + i%5)
			}
			res[r] = rt.DP.AllReduce(rt.Context(), collective.F32(buf), collective.Avg)
			if res[r] == nil && buf[12347] != float32(15+12347%5) {
				res[r] = fmt.Errorf("avg %v", buf[12347])
			}
		}()
	}
	wg.Wait()
	for r, err := range res {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}
