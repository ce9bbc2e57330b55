package worker

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/coordinator"
	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
)

// joinN starts a coordinator for mesh m and joins every rank in-process,
// as the strand launcher's environment would describe them.
func joinN(t *testing.T, m mesh.Mesh) (*coordinator.Server, []*Runtime) {
	return joinEpoch(t, m, 0)
}

// joinEpoch is joinN for a job in the given epoch.
func joinEpoch(t *testing.T, m mesh.Mesh, epoch int64) (*coordinator.Server, []*Runtime) {
	t.Helper()
	srv, err := coordinator.Start(coordinator.Config{Addr: "127.0.0.1:0", Mesh: m, Token: "tok", JobID: "wt", JoinTimeout: 20 * time.Second, Epoch: epoch})
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
			jobenv.Coordinator: srv.Addr(), jobenv.Token: "tok", jobenv.JobID: "wt", jobenv.Rank: strconv.Itoa(r),
			jobenv.LocalRank: strconv.Itoa(r), jobenv.WorldSize: strconv.Itoa(n),
			jobenv.Mesh: jobenv.FormatMesh(m.DP, m.TP, m.PP), jobenv.Epoch: strconv.FormatInt(epoch, 10),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rts[r], errs[r] = Join(ctx, Options{
				Getenv: func(k string) string { return env[k] }, Stderr: io.Discard, HeartbeatInterval: 50 * time.Millisecond,
			})
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d join: %v", r, err)
		}
	}
	return srv, rts
}

func TestJoinBuildsGroupsAndLeaves(t *testing.T) {
	m := mesh.Mesh{DP: 2, TP: 2, PP: 1}
	srv, rts := joinN(t, m)
	var wg sync.WaitGroup
	errs := make([]error, len(rts))
	for r, rt := range rts {
		if rt.Rank != r || rt.Coord != m.Coord(r) {
			t.Fatalf("rank %d: got rank %d coord %v", r, rt.Rank, rt.Coord)
		}
		if got := rt.TP.Ranks(); got[0] != r/2*2 || len(got) != 2 {
			t.Fatalf("rank %d TP group %v", r, got)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := []float32{float32(r)}
			err := rt.DP.AllReduce(rt.Context(), collective.F32(buf), collective.Sum)
			// DP group of rank r: {r%2, r%2+2}; sum = 2*(r%2) + 2.
			if want := float32(2*(r%2) + 2); err == nil && buf[0] != want {
				err = errors.New("dp sum " + strconv.Itoa(int(buf[0])) + ", want " + strconv.Itoa(int(want)))
			}
			rt.Report(3, map[string]float64{"loss": 1.5})
			time.Sleep(150 * time.Millisecond) // one heartbeat
			errs[r] = rt.Leave(context.Background(), err)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	select {
	case <-srv.Finished():
	case <-time.After(5 * time.Second):
		t.Fatal("job not finished after every rank left")
	}
	if st, reason, _ := srv.Result(); st != pb.JobState_JOB_STATE_DONE {
		t.Fatalf("state %v %s", st, reason)
	}
	if v, ok := rts[1].Metrics.Value("strand_loss", map[string]string{"rank": "1"}); !ok || v != 1.5 {
		t.Fatalf("worker metric %v %v", v, ok)
	}
}

func TestDeadRankCancelsOthers(t *testing.T) {
	m := mesh.Mesh{DP: 3, TP: 1, PP: 1}
	_, rts := joinN(t, m)
	// Rank 0 and 1 start an all-reduce that rank 2 never joins.
	done := make(chan error, 2)
	for _, rt := range rts[:2] {
		go func() {
			err := rt.World.AllReduce(context.Background(), collective.F32(make([]float32, 1000)), collective.Sum)
			done <- rt.Explain(err)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	// Rank 2 "crashes": no Leave, its connections and gossip just vanish.
	dead := rts[2]
	dead.mu.Lock()
	dead.leaving = true
	dead.mu.Unlock()
	dead.stopWatch()
	_ = dead.gossip.Shutdown()
	dead.gossip = nil
	_ = dead.Transport.Close()
	start := time.Now()
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "rank 2") {
				t.Fatalf("in-flight all-reduce: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("in-flight all-reduce still blocked 5 s after rank 2 died")
		}
	}
	select {
	case <-rts[0].Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("rank 0's context not cancelled within 5 s of rank 2's death")
	}
	var rd *RankDeadError
	if !errors.As(context.Cause(rts[0].Context()), &rd) || rd.Rank != 2 {
		t.Fatalf("cause %v", context.Cause(rts[0].Context()))
	}
	t.Logf("survivors stopped %v after the crash", time.Since(start))
	for _, rt := range rts[:2] {
		if err := rt.Leave(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "rank 2") {
			t.Fatalf("leave after failure: %v", err)
		}
	}
	dead.close()
}

func TestJoinOutsideJob(t *testing.T) {
	_, err := Join(context.Background(), Options{Getenv: func(string) string { return "" }, Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "not started as part of a job") {
		t.Fatalf("err = %v", err)
	}
}
