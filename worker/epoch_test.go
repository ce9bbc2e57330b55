package worker

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
)

// TestEpochScopesTheJob: ranks of epoch 1 join and reduce with each other,
// their rendezvous keys live under "epoch1/", and a worker started for
// epoch 0 (a straggler of the torn-down incarnation) is refused.
func TestEpochScopesTheJob(t *testing.T) {
	m := mesh.Mesh{DP: 2, TP: 1, PP: 1}
	srv, rts := joinEpoch(t, m, 1)
	var wg sync.WaitGroup
	errs := make([]error, len(rts))
	for r, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := []float32{float32(r + 1)}
			errs[r] = rt.World.AllReduce(rt.Context(), collective.F32(buf), collective.Sum)
			if errs[r] == nil && buf[0] != 3 {
				t.Errorf("rank %d: sum %v, want 3", r, buf[0])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := rt.Leave(ctx, errs[r]); err != nil && errs[r] == nil {
				errs[r] = err
			}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	if len(srv.Values("epoch1/")) == 0 || len(srv.Values("epoch0/")) != 0 {
		t.Fatalf("store keys not scoped by epoch: epoch1/ has %d, epoch0/ has %d", len(srv.Values("epoch1/")), len(srv.Values("epoch0/")))
	}

	env := map[string]string{jobenv.Coordinator: srv.Addr(), jobenv.Token: "tok", jobenv.JobID: "wt", jobenv.Rank: "0",
		jobenv.LocalRank: "0", jobenv.WorldSize: "2", jobenv.Mesh: "2,1,1", jobenv.Epoch: "0"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Join(ctx, Options{Getenv: func(k string) string { return env[k] }, Stderr: io.Discard, ConnectTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "stale epoch") {
		t.Fatalf("join from epoch 0 into epoch 1: %v, want a stale-epoch refusal", err)
	}
}
