package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMultiHostNetns runs a 2-node job (2 workers per node) whose nodes
// live in two network namespaces joined by a veth pair, so the coordinator,
// gossip and transport traffic really crosses between "hosts".
func TestMultiHostNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating network namespaces needs root")
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipping: iproute2 (the ip command) is not installed")
	}
	id := os.Getpid() % 100000
	nsA, nsB := fmt.Sprintf("strand-e2e-%d-a", id), fmt.Sprintf("strand-e2e-%d-b", id)
	vA, vB := fmt.Sprintf("se%da", id), fmt.Sprintf("se%db", id)
	const ipA, ipB = "10.231.7.1", "10.231.7.2"
	ip := func(args ...string) error {
		out, err := exec.Command(ipBin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		_ = ip("netns", "del", nsA)
		_ = ip("netns", "del", nsB)
	})
	setup := [][]string{
		{"netns", "add", nsA}, {"netns", "add", nsB},
		{"link", "add", vA, "type", "veth", "peer", "name", vB},
		{"link", "set", vA, "netns", nsA}, {"link", "set", vB, "netns", nsB},
		{"-n", nsA, "addr", "add", ipA + "/24", "dev", vA}, {"-n", nsB, "addr", "add", ipB + "/24", "dev", vB},
		{"-n", nsA, "link", "set", vA, "up"}, {"-n", nsB, "link", "set", vB, "up"},
		{"-n", nsA, "link", "set", "lo", "up"}, {"-n", nsB, "link", "set", "lo", "up"},
	}
	for _, s := range setup {
		if err := ip(s...); err != nil {
			t.Skipf("skipping: cannot build the namespaces here: %v", err)
		}
	}
	coord := ipA + ":29517"
	node := func(ns string, rank int) *job {
		return start(t, nil, ipBin, "netns", "exec", ns, strandBin, "check", "--nnodes", "2", "--node-rank", fmt.Sprint(rank),
			"--coordinator", coord, "--nproc-per-node", "2", "--token", "netns-token", "--tp", "2", "--connect-timeout", "30s")
	}
	a := node(nsA, 0)
	b := node(nsB, 1)
	ca, cb := a.wait(t, 90*time.Second), b.wait(t, 90*time.Second)
	if ca != 0 || cb != 0 {
		t.Fatalf("exit %d %d\nnode 0:\n%s\nnode 1:\n%s", ca, cb, a.out, b.out)
	}
	// Ranks 2 and 3 live in namespace B: their transport and gossip
	// addresses must be B's, not loopback.
	if out := a.out.String(); !strings.Contains(out, "check passed: 4 ranks, mesh dp=2 tp=2 pp=1") {
		t.Fatalf("node 0 did not report success:\n%s", out)
	}
	if out := b.out.String(); !strings.Contains(out, "[rank 3] rank 3 (dp=1,tp=1,pp=0): every group verified") {
		t.Fatalf("node 1:\n%s", out)
	}
}
