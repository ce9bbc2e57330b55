package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/mesh"
)

const testToken = "s3cret"

func startServer(t *testing.T, m mesh.Mesh, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Mesh: m, Token: testToken, JoinTimeout: 20 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, addr, token string) *Client {
	t.Helper()
	c, err := Dial(ClientConfig{Addr: addr, Token: token, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// joinAll joins n workers concurrently; want[i] is worker i's requested rank.
func joinAll(t *testing.T, ctx context.Context, c *Client, want []int) []*pb.JoinReply {
	t.Helper()
	out := make([]*pb.JoinReply, len(want))
	errs := make([]error, len(want))
	var wg sync.WaitGroup
	for i, w := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = c.Join(ctx, &pb.JoinRequest{Host: "h", LocalRank: int32(i), NodeRank: 0, WantRank: int32(w), Pid: int64(100 + i)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
	}
	return out
}

func TestJoinAssignsRanksAndMesh(t *testing.T) {
	m := mesh.Mesh{DP: 2, TP: 2, PP: 1}
	s := startServer(t, m, nil)
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reps := joinAll(t, ctx, c, []int{-1, -1, -1, -1})
	for i, r := range reps {
		if int(r.Rank) != i { // same host and node: ranks follow local rank
			t.Errorf("worker %d got rank %d", i, r.Rank)
		}
		got, err := MeshFromPB(r.Mesh)
		if err != nil || got != m {
			t.Errorf("mesh %v %v", got, err)
		}
		if len(r.Members) != 4 || r.Members[2].Pid != 102 || r.GossipSeed == "" {
			t.Errorf("reply %v", r)
		}
	}
	st, err := c.Status(ctx)
	if err != nil || st.State != pb.JobState_JOB_STATE_RUNNING || len(st.Ranks) != 4 || st.Ranks[3].Dp != 1 || st.Ranks[3].Tp != 1 {
		t.Fatalf("status %v %v", st, err)
	}
	// A fifth worker is refused with a message naming the job size.
	_, err = c.Join(ctx, &pb.JoinRequest{Host: "late", WantRank: -1})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("late join: %v", err)
	}
}

func TestStoreAndBarrier(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 3, TP: 1, PP: 1}, nil)
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	joinAll(t, ctx, c, []int{0, 1, 2})

	st := c.Store()
	got := make(chan string, 1)
	go func() {
		v, err := st.Get(ctx, "addr/1")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(v)
	}()
	time.Sleep(50 * time.Millisecond)
	if err := st.Set(ctx, "addr/1", []byte("10.0.0.1:555")); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "10.0.0.1:555" {
		t.Fatalf("waiting get returned %q", v)
	}
	rep, err := c.RPC.Get(ctx, &pb.GetRequest{Key: "missing"})
	if err != nil || rep.Found {
		t.Fatalf("non-waiting get of a missing key: %v %v", rep, err)
	}
	if _, err := c.RPC.Get(ctx, &pb.GetRequest{Key: "missing", Wait: true, TimeoutMs: 50}); err == nil {
		t.Fatal("waiting get of a missing key did not time out")
	}

	// Barrier: two ranks arrive; the timeout names the missing one.
	_, err = c.RPC.Barrier(ctx, &pb.BarrierRequest{Name: "b0", Rank: 0, TimeoutMs: 100})
	if err == nil || !strings.Contains(err.Error(), "missing ranks 1,2") {
		t.Fatalf("lonely barrier: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[r] = c.Barrier(ctx, "b1", r) }()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("barrier rank %d: %v", r, err)
		}
	}
}

func TestWrongTokenRefused(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 1, TP: 1, PP: 1}, nil)
	c := dial(t, s.Addr(), "guess")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Join(ctx, &pb.JoinRequest{Host: "h", WantRank: -1})
	if err == nil || !strings.Contains(err.Error(), "wrong job token") {
		t.Fatalf("join with a wrong token: %v", err)
	}
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "wrong job token") {
		t.Fatalf("status with a wrong token: %v", err)
	}
	if _, err := Start(Config{Addr: "127.0.0.1:0", Mesh: mesh.Mesh{DP: 1, TP: 1, PP: 1}}); err == nil {
		t.Fatal("coordinator without a token started")
	}
}

func TestJoinTimeoutNamesMissing(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 4, TP: 1, PP: 1}, func(c *Config) { c.JoinTimeout = 300 * time.Millisecond })
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Join(ctx, &pb.JoinRequest{Host: "h", WantRank: 2, Pid: 7})
	if err == nil || !strings.Contains(err.Error(), "1 of 4 ranks joined") || !strings.Contains(err.Error(), "missing ranks 0,1,3") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnreachableCoordinatorRetriesThenFails(t *testing.T) {
	c, err := Dial(ClientConfig{Addr: "127.0.0.1:1", Token: testToken, ConnectTimeout: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Join(context.Background(), &pb.JoinRequest{Host: "h", WantRank: -1})
	if err == nil || !strings.Contains(err.Error(), "not reachable after") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
		t.Fatalf("gave up after %v", el)
	}
}

// watch opens rank's watch stream and returns a channel of its events.
func watch(t *testing.T, ctx context.Context, c *Client, rank int) <-chan *pb.Event {
	t.Helper()
	st, err := c.RPC.Watch(ctx, &pb.WatchRequest{Rank: int32(rank)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil || first.Kind != pb.Event_KIND_RUNNING {
		t.Fatalf("first event %v %v", first, err)
	}
	ch := make(chan *pb.Event, 1)
	go func() {
		ev, err := st.Recv()
		if err == nil {
			ch <- ev
		}
		close(ch)
	}()
	return ch
}

func TestDroppedWatchFailsJobNamingRank(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 2, TP: 1, PP: 1}, nil)
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	joinAll(t, ctx, c, []int{0, 1})
	ev0 := watch(t, ctx, c, 0)
	ctx1, drop1 := context.WithCancel(ctx)
	watch(t, ctx1, c, 1)
	drop1() // rank 1's process "dies"
	select {
	case ev := <-ev0:
		if ev == nil || ev.Kind != pb.Event_KIND_RANK_DEAD || ev.Rank != 1 || !strings.Contains(ev.Reason, "rank 1") {
			t.Fatalf("event %v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("rank 0 was not told")
	}
	<-s.Finished()
	if st, _, dead := s.Result(); st != pb.JobState_JOB_STATE_FAILED || dead != 1 {
		t.Fatalf("result %v dead %d", st, dead)
	}
}

func TestGossipDetectsDeadRank(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 2, TP: 1, PP: 1}, nil) // default timings: the 5 s promise
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	reps := joinAll(t, ctx, c, []int{0, 1})
	ev0 := watch(t, ctx, c, 0)
	// Rank 1 joins the gossip but never opens a watch stream, so only
	// memberlist can notice it is gone.
	ml, err := StartGossip(GossipName(1), "127.0.0.1", testToken, GossipConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ml.Join([]string{reps[1].GossipSeed}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	_ = ml.Shutdown() // no Leave message: looks like a crash
	select {
	case ev := <-ev0:
		if ev == nil || ev.Rank != 1 || !strings.Contains(ev.Reason, "memberlist") {
			t.Fatalf("event %v", ev)
		}
		t.Logf("memberlist detected the dead rank after %v", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("dead rank not detected within 5 s")
	}
}

func TestGossipVerdictNeedsStaleHeartbeats(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 2, TP: 1, PP: 1}, nil)
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reps := joinAll(t, ctx, c, []int{0, 1})
	ml, err := StartGossip(GossipName(1), "127.0.0.1", testToken, GossipConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ml.Join([]string{reps[1].GossipSeed}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = ml.Shutdown() // memberlist will call rank 1 dead in about 3 s...
	// ... but rank 1 keeps heartbeating over TCP for 5 s: slow, not dead.
	beat := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if _, err := c.RPC.Heartbeat(ctx, &pb.HeartbeatRequest{Rank: 1}); err != nil {
				t.Error(err)
			}
		}
	}
	beat(5 * time.Second)
	if st, reason, _ := s.Result(); st != pb.JobState_JOB_STATE_RUNNING {
		t.Fatalf("a heartbeating rank was declared dead: %v %s", st, reason)
	}
	// Heartbeats stop: now the verdict stands.
	stopped := time.Now()
	select {
	case <-s.Finished():
		_, reason, dead := s.Result()
		if dead != 1 || !strings.Contains(reason, "last heartbeat") {
			t.Fatalf("dead %d reason %q", dead, reason)
		}
		t.Logf("failed %v after the heartbeats stopped", time.Since(stopped))
	case <-time.After(5 * time.Second):
		t.Fatal("rank 1 not failed 5 s after its heartbeats stopped")
	}
}

func TestGossipRefusesOtherToken(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 1, TP: 1, PP: 1}, nil)
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep := joinAll(t, ctx, c, []int{0})[0]
	ml, err := StartGossip("intruder", "127.0.0.1", "other", GossipConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	if _, err := ml.Join([]string{rep.GossipSeed}); err == nil {
		t.Fatal("gossip node with another token joined")
	}
}

func TestLeaveFinishesJobOrFailsIt(t *testing.T) {
	for _, withErr := range []bool{false, true} {
		t.Run(fmt.Sprint("error=", withErr), func(t *testing.T) {
			s := startServer(t, mesh.Mesh{DP: 2, TP: 1, PP: 1}, nil)
			c := dial(t, s.Addr(), testToken)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			joinAll(t, ctx, c, []int{0, 1})
			msg := ""
			if withErr {
				msg = "loss is NaN"
			}
			if _, err := c.RPC.Leave(ctx, &pb.LeaveRequest{Rank: 1, Error: msg}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.RPC.Leave(ctx, &pb.LeaveRequest{Rank: 0}); err != nil {
				t.Fatal(err)
			}
			<-s.Finished()
			st, reason, dead := s.Result()
			if withErr {
				if st != pb.JobState_JOB_STATE_FAILED || dead != 1 || !strings.Contains(reason, "loss is NaN") {
					t.Fatalf("%v %q %d", st, reason, dead)
				}
			} else if st != pb.JobState_JOB_STATE_DONE {
				t.Fatalf("state %v", st)
			}
		})
	}
}

func TestHeartbeatAndAbort(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 1, TP: 1, PP: 1}, func(c *Config) { c.MetricsAddr = "127.0.0.1:0" })
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	joinAll(t, ctx, c, []int{0})
	rep, err := c.RPC.Heartbeat(ctx, &pb.HeartbeatRequest{Rank: 0, Step: 12, Metrics: map[string]float64{"loss": 3.5}})
	if err != nil || rep.State != pb.JobState_JOB_STATE_RUNNING {
		t.Fatalf("heartbeat %v %v", rep, err)
	}
	if v, ok := s.metrics.Value("strand_loss", map[string]string{"rank": "0"}); !ok || v != 3.5 {
		t.Fatalf("loss metric %v %v", v, ok)
	}
	st, _ := c.Status(ctx)
	if st.Ranks[0].Step != 12 || st.Ranks[0].Metrics["loss"] != 3.5 {
		t.Fatalf("status %v", st.Ranks[0])
	}
	if _, err := c.RPC.Abort(ctx, &pb.AbortRequest{Rank: 0, Reason: "operator said so"}); err != nil {
		t.Fatal(err)
	}
	rep, _ = c.RPC.Heartbeat(ctx, &pb.HeartbeatRequest{Rank: 0})
	if rep.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(rep.Reason, "operator said so") {
		t.Fatalf("after abort: %v", rep)
	}
}
