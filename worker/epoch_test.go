package worker

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/coordinator"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/tcp"
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

// crossEpochStore lets a straggler of epoch 0 find the address rank 0
// published in epoch 1 (as if the store had not been scoped), so the test
// reaches the transport's own check; its writes go nowhere.
type crossEpochStore struct {
	real, junk rendezvous.Store
	from, to   string
}

func (s crossEpochStore) Set(ctx context.Context, k string, v []byte) error {
	return s.junk.Set(ctx, k, v)
}

func (s crossEpochStore) Get(ctx context.Context, k string) ([]byte, error) {
	return s.real.Get(ctx, strings.Replace(k, "/"+s.from+"/", "/"+s.to+"/", 1))
}

// TestTransportRefusesOtherEpoch: even when a straggler of epoch 0 finds
// the address of a rank of epoch 1, the TCP handshake refuses it (the job
// id carries the epoch), and the rank still connects to its real peer.
func TestTransportRefusesOtherEpoch(t *testing.T) {
	store := rendezvous.NewMem()
	var logs syncLog
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	jobNow, jobOld := coordinator.TransportJobID("wt", 1), coordinator.TransportJobID("wt", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rank0 transport.Transport
	var err0 error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rank0, err0 = tcp.Dial(ctx, tcp.Config{Rank: 0, Size: 2, Store: store, JobID: jobNow, Token: "tok", Bind: "127.0.0.1:0", Logger: logger})
	}()

	sctx, scancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	straggler, err := tcp.Dial(sctx, tcp.Config{Rank: 1, Size: 2, JobID: jobOld, Token: "tok", Bind: "127.0.0.1:0",
		Store: crossEpochStore{real: store, junk: rendezvous.NewMem(), from: jobOld, to: jobNow}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	scancel()
	if err == nil {
		straggler.Close()
		t.Fatal("a transport of epoch 0 connected to a rank of epoch 1")
	}
	if !strings.Contains(logs.String(), `job id \"wt\", want \"wt.e1\"`) {
		t.Fatalf("rank 0 did not refuse the straggler by job id; its log:\n%s", logs.String())
	}

	rank1, err := tcp.Dial(ctx, tcp.Config{Rank: 1, Size: 2, Store: store, JobID: jobNow, Token: "tok", Bind: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatalf("rank 1 of epoch 1: %v", err)
	}
	defer rank1.Close()
	<-done
	if err0 != nil {
		t.Fatalf("rank 0 of epoch 1: %v", err0)
	}
	rank0.Close()
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
