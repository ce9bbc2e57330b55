package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/mesh"
)

// TestStatusMarksStalledAndMissingRanks: a rank whose step stays behind
// while the others advance is "stalled" (with its step and age), one
// whose heartbeats stop is "missing" (with their age), and when no rank
// advances the step watchdog marks them all and warns once.
func TestStatusMarksStalledAndMissingRanks(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := startServer(t, mesh.Mesh{DP: 3, TP: 1, PP: 1}, func(c *Config) {
		c.StallAfter, c.HeartbeatStale, c.Log = 400*time.Millisecond, 800*time.Millisecond, zap.New(core)
	})
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	joinAll(t, ctx, c, []int{0, 1, 2})
	beat := func(rank int, step int64) {
		t.Helper()
		if _, err := c.RPC.Heartbeat(ctx, &pb.HeartbeatRequest{Rank: int32(rank), Step: step}); err != nil {
			t.Fatal(err)
		}
	}
	states := func() []string {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range st.Ranks {
			out = append(out, r.State)
		}
		return out
	}
	// ranks 0 and 1 advance, rank 2 stays at step 1 (but heartbeats)
	step := int64(1)
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		step++
		beat(0, step)
		beat(1, step)
		beat(2, 1)
	}
	got := states()
	if got[0] != "running" || got[1] != "running" || !strings.HasPrefix(got[2], "stalled: step 1 for ") || !strings.Contains(got[2], "others at") {
		t.Fatalf("states %q, want rank 2 stalled at step 1", got)
	}
	// rank 1 stops heartbeating
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		step++
		beat(0, step)
		beat(2, step)
	}
	if got = states(); !strings.HasPrefix(got[1], "missing: last heartbeat ") {
		t.Fatalf("states %q, want rank 1 missing", got)
	}
	// nobody advances: every heartbeating rank at the top step is stalled
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		beat(0, step)
		beat(1, step)
		beat(2, step)
	}
	got = states()
	for r, st := range got {
		if !strings.HasPrefix(st, "stalled: no rank past step ") {
			t.Errorf("rank %d %q, want stalled with the whole job", r, st)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for logs.FilterMessageSnippet("step watchdog").Len() == 0 && time.Now().Before(deadline) {
		beat(0, step)
		beat(1, step)
		beat(2, step)
		time.Sleep(100 * time.Millisecond)
	}
	ws := logs.FilterMessageSnippet("step watchdog").All()
	if len(ws) == 0 || ws[0].Level != zapcore.WarnLevel {
		t.Fatalf("no step watchdog warning; log %v", logs.All())
	}
	if n := len(ws); n > 3 { // rank 2's stall, rank 1 missing, the job's stall
		t.Errorf("%d watchdog warnings, want one per stall", n)
	}
}
