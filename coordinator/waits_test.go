package coordinator

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/mesh"
)

// TestWatchdogSaysWhoWaitsOnWhom: ranks 0 and 2 are in the world
// all-reduce seq 5, rank 1 entered only up to seq 4 and sits in no call
// (it still heartbeats, its step stuck). When the watchdog fires it names
// rank 1 as the rank the others wait on, one line per rank, with the op,
// group, sequence number and how long.
func TestWatchdogSaysWhoWaitsOnWhom(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := startServer(t, mesh.Mesh{DP: 3, TP: 1, PP: 1}, func(c *Config) {
		c.StallAfter, c.Log = 300*time.Millisecond, zap.New(core)
	})
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	joinAll(t, ctx, c, []int{0, 1, 2})
	world := []int32{0, 1, 2}
	in := &pb.InFlight{Group: "world", Ranks: world, Op: "allreduce", Seq: 5, Peer: -1, Seconds: 1.5}
	beat := func(rank int, f *pb.InFlight, entered uint64) {
		t.Helper()
		req := &pb.HeartbeatRequest{Rank: int32(rank), Step: 3, InFlight: f, Entered: map[string]uint64{"world": entered, "dp": 9}}
		if _, err := c.RPC.Heartbeat(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		beat(0, in, 5)
		beat(1, nil, 4)
		beat(2, in, 5)
		if logs.FilterMessageSnippet("the waits end at").Len() > 0 {
			break
		}
	}
	var lines []string
	for _, e := range logs.FilterMessageSnippet("step watchdog: ").All() {
		lines = append(lines, e.Message)
	}
	all := strings.Join(lines, "\n")
	for _, r := range []string{"0", "2"} {
		re := regexp.MustCompile(`step watchdog: rank ` + r + ` waits on rank 1 in allreduce group world seq 5 for \d+\.\ds \(rank 1 never entered it\)`)
		if !re.MatchString(all) {
			t.Errorf("no line saying rank %s waits on rank 1:\n%s", r, all)
		}
	}
	if !strings.Contains(all, "step watchdog: rank 1 is in no collective (step 3)") || !strings.Contains(all, "step watchdog: the waits end at rank 1") {
		t.Errorf("the report does not end the waits at rank 1:\n%s", all)
	}
}

// TestWaitsFollowPeersAndSilence: a rank all of whose group entered the
// call waits on the peer it names; a rank whose heartbeats stopped is
// said to be silent, and the chain of waits (0 -> 1 -> 2) ends at it.
func TestWaitsFollowPeersAndSilence(t *testing.T) {
	now := time.Now()
	s := &Server{cfg: Config{HeartbeatStale: time.Second}, state: pb.JobState_JOB_STATE_RUNNING}
	world := []int32{0, 1, 2}
	entered := map[string]uint64{"world": 7}
	s.joiners = []*joiner{
		{state: "running", lastSeen: now, entered: entered, inFlight: &pb.InFlight{Group: "world", Ranks: world, Op: "allreduce", Seq: 7, Peer: 1, Seconds: 2}},
		{state: "running", lastSeen: now, entered: entered, inFlight: &pb.InFlight{Group: "world", Ranks: world, Op: "allreduce", Seq: 7, Peer: 2, Seconds: 2}},
		{state: "running", lastSeen: now.Add(-4 * time.Second), entered: entered, inFlight: &pb.InFlight{Group: "world", Ranks: world, Op: "allreduce", Seq: 7, Peer: 0}},
	}
	got := strings.Join(s.waitsLocked(now), "\n")
	for _, want := range []string{
		"rank 0 waits on rank 2 in allreduce group world seq 7 for 2.0s (rank 2 sends no heartbeats)",
		"rank 1 waits on rank 2 in allreduce group world seq 7 for 2.0s (rank 2 sends no heartbeats)",
		"rank 2: no heartbeat for 4.0s (stopped, frozen or unreachable); last seen in allreduce group world seq 7",
		"the waits end at rank 2",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	// all alive and in the call: each waits on the peer it names, in a
	// cycle
	s.joiners[2].lastSeen = now
	got = strings.Join(s.waitsLocked(now), "\n")
	for _, want := range []string{"rank 0 waits on rank 1 in allreduce", "rank 1 waits on rank 2 in allreduce", "rank 2 waits on rank 0 in allreduce", "the waits go round in a cycle through ranks 0, 1, 2"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}
