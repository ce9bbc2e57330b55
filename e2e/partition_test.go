package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// dataLink adds a second veth pair between the two hosts, the data
// network (10.231.8.0/24) that workers bind their transport to with
// --bind while the coordinator and gossip stay on the first link.
func (h hosts) dataLink(t *testing.T, tag string) (ipA2, ipB2, vB2 string) {
	t.Helper()
	vA2, vB2 := h.vA+"d", h.vB+"d"
	ipA2, ipB2 = "10.231.8.1", "10.231.8.2"
	for _, s := range [][]string{
		{"link", "add", vA2, "type", "veth", "peer", "name", vB2},
		{"link", "set", vA2, "netns", h.nsA}, {"link", "set", vB2, "netns", h.nsB},
		{"-n", h.nsA, "addr", "add", ipA2 + "/24", "dev", vA2}, {"-n", h.nsB, "addr", "add", ipB2 + "/24", "dev", vB2},
		{"-n", h.nsA, "link", "set", vA2, "up"}, {"-n", h.nsB, "link", "set", vB2, "up"},
	} {
		if err := h.ip(s...); err != nil {
			t.Skipf("skipping: cannot build the data link: %v", err)
		}
	}
	return ipA2, ipB2, vB2
}

// TestDataLinkPartitionNamesThePair cuts only the data network of a
// 2-node job whose transport is bound to it (--bind), while the
// coordinator's link stays up: no socket is reset and every process keeps
// heartbeating, so only the data connections' own link watch (keepalive,
// TCP_USER_TIMEOUT) can tell. The link must be named within 10 s of the
// cut (a link between a rank of each host), both nodes must fail, and no
// process may be blamed.
func TestDataLinkPartitionNamesThePair(t *testing.T) {
	h := twoHosts(t, "p")
	ipA2, ipB2, vB2 := h.dataLink(t, "p")
	coord := ipA + ":29519"
	a := h.node(t, h.nsA, 0, coord, "--pp", "2", "--duration", "120s", "--bind", ipA2)
	b := h.node(t, h.nsB, 1, coord, "--pp", "2", "--duration", "120s", "--bind", ipB2)
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(a.out.String()+b.out.String(), "pp group") < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("job never ran\nnode 0:\n%s\nnode 1:\n%s", a.out, b.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if err := h.ip("-n", h.nsB, "link", "set", vB2, "down"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	// Watch for the link's failure while both nodes wind down (bounded:
	// never hang), noting when it was first reported.
	var named time.Duration
	for deadline := cut.Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if named == 0 && strings.Contains(a.out.String()+b.out.String(), " lost: no acknowledgement") {
			named = time.Since(cut)
		}
		if exitedJob(a) && exitedJob(b) {
			break
		}
	}
	ca, cb := a.wait(t, time.Second), b.wait(t, time.Second)
	took := time.Since(cut)
	t.Logf("link failure reported %v after the cut; nodes exited (%d, %d) %v after it", named, ca, cb, took)
	if testing.Verbose() {
		t.Logf("node 0:\n%s\nnode 1:\n%s", a.out, b.out)
	}
	// The transport names the link after LinkTimeout (4 s); the job then
	// ends after the worker's verdict wait (3 s): 6.6 s on an idle VM.
	if named == 0 || named > 10*time.Second {
		t.Errorf("the failed link was reported %v after the cut, want within 10 s", named)
	}
	out := a.out.String() + b.out.String()
	if ca == 0 || cb == 0 {
		t.Fatalf("exit codes %d %d after a data partition:\n%s", ca, cb, out)
	}
	// The link is named with one rank of each host (stage 0 on node 0:
	// ranks 0, 1; stage 1 on node 1: ranks 2, 3).
	links := regexp.MustCompile(`link rank (\d) <-> rank (\d) lost`).FindAllStringSubmatch(out, -1)
	if len(links) == 0 {
		t.Fatalf("no link named in the output:\n%s", out)
	}
	for _, l := range links {
		x, y := l[1][0]-'0', l[2][0]-'0'
		if (x < 2) == (y < 2) {
			t.Errorf("link rank %c <-> rank %c joins two ranks of one host", x+'0', y+'0')
		}
	}
	if strings.Contains(out, "memberlist stopped hearing") || strings.Contains(out, "died:") {
		t.Errorf("a process was blamed for a data-link partition:\n%s", out)
	}
}

func exitedJob(j *job) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}
