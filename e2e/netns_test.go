package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// hosts are two network namespaces joined by a veth pair: two "hosts" at
// ipA and ipB that can only reach each other over that link.
type hosts struct {
	ipBin, nsA, nsB, vA, vB string
}

const ipA, ipB = "10.231.7.1", "10.231.7.2"

func (h hosts) ip(args ...string) error {
	out, err := exec.Command(h.ipBin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// twoHosts builds the namespaces (removed when the test ends), or skips
// the test saying why it cannot.
func twoHosts(t *testing.T, tag string) hosts {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating network namespaces needs root")
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipping: iproute2 (the ip command) is not installed")
	}
	id := os.Getpid() % 100000
	h := hosts{ipBin: ipBin,
		nsA: fmt.Sprintf("strand-e2e-%d-%s-a", id, tag), nsB: fmt.Sprintf("strand-e2e-%d-%s-b", id, tag),
		vA: fmt.Sprintf("s%d%sa", id, tag), vB: fmt.Sprintf("s%d%sb", id, tag)}
	t.Cleanup(func() {
		_ = h.ip("netns", "del", h.nsA)
		_ = h.ip("netns", "del", h.nsB)
	})
	setup := [][]string{
		{"netns", "add", h.nsA}, {"netns", "add", h.nsB},
		{"link", "add", h.vA, "type", "veth", "peer", "name", h.vB},
		{"link", "set", h.vA, "netns", h.nsA}, {"link", "set", h.vB, "netns", h.nsB},
		{"-n", h.nsA, "addr", "add", ipA + "/24", "dev", h.vA}, {"-n", h.nsB, "addr", "add", ipB + "/24", "dev", h.vB},
		{"-n", h.nsA, "link", "set", h.vA, "up"}, {"-n", h.nsB, "link", "set", h.vB, "up"},
		{"-n", h.nsA, "link", "set", "lo", "up"}, {"-n", h.nsB, "link", "set", "lo", "up"},
	}
	for _, s := range setup {
		if err := h.ip(s...); err != nil {
			t.Skipf("skipping: cannot build the namespaces here: %v", err)
		}
	}
	return h
}

// node starts one node of a 2 x 2 job inside namespace ns.
func (h hosts) node(t *testing.T, ns string, rank int, coord string, extra ...string) *job {
	args := []string{h.ipBin, "netns", "exec", ns, strandBin, "check", "--nnodes", "2", "--node-rank", fmt.Sprint(rank),
		"--coordinator", coord, "--nproc-per-node", "2", "--token", "netns-token", "--connect-timeout", "30s"}
	return start(t, nil, append(args, extra...)...)
}

// TestMultiHostNetns runs a 2-node job (2 workers per node) whose nodes
// live in two network namespaces, so the coordinator, gossip and transport
// traffic really crosses between "hosts".
func TestMultiHostNetns(t *testing.T) {
	h := twoHosts(t, "j")
	coord := ipA + ":29517"
	a := h.node(t, h.nsA, 0, coord, "--tp", "2")
	b := h.node(t, h.nsB, 1, coord, "--tp", "2")
	ca, cb := a.wait(t, 90*time.Second), b.wait(t, 90*time.Second)
	if ca != 0 || cb != 0 {
		t.Fatalf("exit %d %d\nnode 0:\n%s\nnode 1:\n%s", ca, cb, a.out, b.out)
	}
	if out := a.out.String(); !strings.Contains(out, "check passed: 4 ranks, mesh dp=2 tp=2 pp=1") {
		t.Fatalf("node 0 did not report success:\n%s", out)
	}
	if out := b.out.String(); !strings.Contains(out, "[rank 3] rank 3 (dp=1,tp=1,pp=0): every group verified") {
		t.Fatalf("node 1:\n%s", out)
	}
}

// TestNetworkSplitDetected cuts the link between the two hosts while the
// job runs. No socket is reset, so only gossip can tell: the coordinator's
// side must name a rank of the other host as dead, and the cut-off host
// must notice it lost the coordinator; both within 10 s.
func TestNetworkSplitDetected(t *testing.T) {
	h := twoHosts(t, "s")
	coord := ipA + ":29518"
	a := h.node(t, h.nsA, 0, coord, "--duration", "120s")
	b := h.node(t, h.nsB, 1, coord, "--duration", "120s")
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(a.out.String()+b.out.String(), "pp group") < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("job never ran\nnode 0:\n%s\nnode 1:\n%s", a.out, b.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if err := h.ip("-n", h.nsB, "link", "set", h.vB, "down"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	ca := a.wait(t, 10*time.Second)
	cb := b.wait(t, 15*time.Second)
	t.Logf("node 0 and node 1 exited (%d, %d), %v after the cut", ca, cb, time.Since(cut))
	outA := a.out.String()
	if ca == 0 || !strings.Contains(outA, "memberlist stopped hearing from it") ||
		!(strings.Contains(outA, "rank 2 (host") || strings.Contains(outA, "rank 3 (host")) {
		t.Fatalf("node 0 (exit %d) does not blame a rank of the other host:\n%s", ca, outA)
	}
	if cb == 0 {
		t.Fatalf("node 1 exited 0 after losing the network:\n%s", b.out)
	}
}
