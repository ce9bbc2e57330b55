package worker

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/coordinator"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
)

// joinLogged is joinN with each rank's log captured.
func joinLogged(t *testing.T, m mesh.Mesh) ([]*Runtime, []*syncLog) {
	t.Helper()
	srv, err := coordinator.Start(coordinator.Config{Addr: "127.0.0.1:0", Mesh: m, Token: "tok", JobID: "wt", JoinTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	n := m.World()
	rts, logs, errs := make([]*Runtime, n), make([]*syncLog, n), make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		env := map[string]string{
			jobenv.Coordinator: srv.Addr(), jobenv.Token: "tok", jobenv.JobID: "wt", jobenv.Rank: strconv.Itoa(r),
			jobenv.LocalRank: strconv.Itoa(r), jobenv.WorldSize: strconv.Itoa(n), jobenv.Mesh: jobenv.FormatMesh(m.DP, m.TP, m.PP),
		}
		logs[r] = &syncLog{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rts[r], errs[r] = Join(ctx, Options{Getenv: func(k string) string { return env[k] }, Stderr: logs[r], HeartbeatInterval: 50 * time.Millisecond})
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d join: %v", r, err)
		}
	}
	t.Cleanup(func() {
		// together: a clean Leave waits at a barrier for every rank
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, rt := range rts {
			wg.Add(1)
			go func() { defer wg.Done(); _ = rt.Leave(ctx, nil) }()
		}
		wg.Wait()
	})
	return rts, logs
}

// TestWorkerGossipLogged: memberlist's complaints inside a worker (here a
// flood of garbage UDP packets at its gossip port, which fail to decrypt)
// reach the rank's own log, with its rank and the sender, as one line per
// sender and interval; other ranks' logs stay clean.
func TestWorkerGossipLogged(t *testing.T) {
	rts, logs := joinLogged(t, mesh.Mesh{DP: 2, TP: 1, PP: 1})
	node := rts[1].gossip.LocalNode()
	u, err := net.Dial("udp", net.JoinHostPort(node.Addr.String(), strconv.Itoa(int(node.Port))))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for i := 0; i < 20; i++ {
		if _, err := u.Write([]byte("this is not an encrypted memberlist packet at all")); err != nil {
			t.Fatal(err)
		}
	}
	var line string
	for deadline := time.Now().Add(5 * time.Second); line == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(logs[1].String(), "\n") {
			if strings.Contains(l, "gossip:") {
				line = l
			}
		}
	}
	if line == "" {
		t.Fatalf("no gossip complaint in rank 1's log:\n%s", logs[1])
	}
	if !strings.Contains(line, "WARN") || !strings.Contains(line, `"rank": 1`) || !strings.Contains(line, `"peer": "127.0.0.1:`) {
		t.Errorf("gossip complaint without level, rank or sender: %s", line)
	}
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(logs[1].String(), "gossip:"); n != 1 {
		t.Errorf("%d gossip lines for 20 garbage packets from one host, want 1:\n%s", n, logs[1])
	}
	if strings.Contains(logs[0].String(), "gossip:") {
		t.Errorf("rank 0 logs gossip complaints about rank 1's packets:\n%s", logs[0])
	}
}
