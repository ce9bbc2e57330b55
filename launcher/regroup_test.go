package launcher

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/mesh"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// regroupNodes runs Regroup for the given old node ranks of a 3-node job
// (2 processes per node, mesh dp=3 tp=2 pp=1), the followers starting
// before node 0 so their retries are exercised. Node 0 waits 5 s for the
// others: with 1 s a loaded machine let it publish before a follower got
// through ("connection refused" once node 0 had closed).
func regroupNodes(t *testing.T, present []int, minNodes int) ([]Plan, []error) {
	t.Helper()
	addr := freeAddr(t)
	plans := make([]Plan, len(present))
	errs := make([]error, len(present))
	var wg sync.WaitGroup
	for i, node := range present {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if node == 0 {
				time.Sleep(400 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			plans[i], errs[i] = Regroup(ctx, RegroupConfig{
				NNodes: 3, NodeRank: node, MinNodes: minNodes, NProcPerNode: 2, Coordinator: addr,
				Mesh: mesh.Mesh{DP: 3, TP: 2, PP: 1}, Timeout: 5 * time.Second,
				Common: Common{Token: "regroup-token", Epoch: 1},
			})
		}()
	}
	wg.Wait()
	return plans, errs
}

// TestRegroupShrinks: node 2 is gone; nodes 0 and 1 agree on a 2-node
// epoch with the same TP and two thirds of the DP.
func TestRegroupShrinks(t *testing.T) {
	plans, errs := regroupNodes(t, []int{0, 1}, 2)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	for i, p := range plans {
		if p.Epoch != 1 || p.NNodes != 2 || p.Mesh() != (mesh.Mesh{DP: 2, TP: 2, PP: 1}) || p.NodeRankOf(i) != i ||
			len(p.Missing) != 1 || p.Missing[0] != 2 {
			t.Fatalf("node %d's plan %+v: want epoch 1, nodes [0 1], mesh 2x2x1, node 2 missing", i, p)
		}
	}
}

// TestRegroupRenumbers: node 1 is gone; node 2 becomes node 1.
func TestRegroupRenumbers(t *testing.T) {
	plans, errs := regroupNodes(t, []int{0, 2}, 1)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if got := plans[1].NodeRankOf(2); got != 1 || plans[1].NNodes != 2 || plans[0].Mesh() != plans[1].Mesh() {
		t.Fatalf("plans %+v: want old node 2 renumbered as node 1", plans)
	}
}

// TestRegroupTooFewNodes: with --min-nodes 3 and node 2 gone, every node
// that came back gets an error naming the missing node.
func TestRegroupTooFewNodes(t *testing.T) {
	_, errs := regroupNodes(t, []int{0, 1}, 3)
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "missing node(s) 2") || !strings.Contains(err.Error(), "--min-nodes 3") {
			t.Fatalf("node %d: %v, want an error naming missing node 2", i, err)
		}
	}
}

// TestRegroupAllBack: every node returns; the plan keeps the full mesh and
// node 0 does not wait out the timeout.
func TestRegroupAllBack(t *testing.T) {
	start := time.Now()
	plans, errs := regroupNodes(t, []int{0, 1, 2}, 0)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if plans[i].Mesh() != (mesh.Mesh{DP: 3, TP: 2, PP: 1}) || plans[i].NodeRankOf(i) != i {
			t.Fatalf("node %d plan %+v", i, plans[i])
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("regroup with every node back took %v", d)
	}
}

func TestRegroupBadConfig(t *testing.T) {
	for i, cfg := range []RegroupConfig{
		{NNodes: 2, NodeRank: 2, NProcPerNode: 1, Coordinator: "127.0.0.1:1", Common: Common{Token: "t"}},
		{NNodes: 2, NodeRank: 0, MinNodes: 3, NProcPerNode: 1, Coordinator: "127.0.0.1:1", Common: Common{Token: "t"}},
		{NNodes: 2, NodeRank: 1, NProcPerNode: 0, Coordinator: "127.0.0.1:1", Common: Common{Token: "t"}},
	} {
		if _, err := Regroup(context.Background(), cfg); err == nil || !strings.HasPrefix(err.Error(), "regroup: ") {
			t.Fatalf("config %d: %v, want a clear error", i, err)
		}
	}
}

func TestMinNodesDefaultsToAll(t *testing.T) {
	if got := (&Flags{NNodes: 3}).MinNodesOrAll(); got != 3 {
		t.Fatalf("--min-nodes unset: %d, want --nnodes (3): no shrinking unless asked", got)
	}
	if got := (&Flags{NNodes: 3, MinNodes: 1}).MinNodesOrAll(); got != 1 {
		t.Fatalf("--min-nodes 1: %d", got)
	}
}
