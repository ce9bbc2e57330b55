package launcher

import (
	"strings"
	"testing"

	"github.com/strand-ml/strand/mesh"
)

func TestJobCores(t *testing.T) {
	for _, c := range []struct {
		hosts          []string
		threads, cores int
		want           int
	}{
		{[]string{"a", "a", "a", "a"}, 1, 2, 2},     // two netns "nodes" of one 2-core machine
		{[]string{"a", "a", "b", "b"}, 1, 2, 4},     // two 2-core machines
		{[]string{"a", "a", "b", "b"}, 2, 2, 4},     // oversubscribed threads count once per core
		{[]string{"a", "b", "c"}, 4, 16, 12},        // threads below the cores
		{[]string{"a", "a", "a", "b"}, 1, 2, 2 + 1}, // uneven hosts
		{nil, 4, 8, 0},
	} {
		if got := JobCores(c.hosts, c.threads, c.cores); got != c.want {
			t.Errorf("JobCores(%v, %d, %d) = %d, want %d", c.hosts, c.threads, c.cores, got, c.want)
		}
	}
}

func TestLaunchLineCountsThisNode(t *testing.T) {
	m := mesh.Mesh{DP: 4, TP: 1, PP: 1}
	if got := LaunchLine(2, 1, 2, m, 0); !strings.HasPrefix(got, "launching 2 of the job's 4 workers on node 1 of 2") {
		t.Errorf("node 1 of 2: %q", got)
	}
	if got := LaunchLine(1, 0, 4, m, 1); !strings.HasPrefix(got, "launching 4 workers") || !strings.Contains(got, "epoch 1") {
		t.Errorf("one node: %q", got)
	}
}
