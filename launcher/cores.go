package launcher

import (
	"fmt"

	"github.com/strand-ml/strand/mesh"
)

// JobCores is how many cores a job's ranks can keep busy together, the
// core count of its peak FLOP/s: on each distinct host (hosts[i] is rank
// i's), its ranks' threads, but no more than the host's cores. cores is
// this machine's count, assumed the same on every host. Nodes that are
// network namespaces of one machine share its host name and so its
// cores.
func JobCores(hosts []string, threadsPerRank, cores int) int {
	perHost := map[string]int{}
	for _, h := range hosts {
		perHost[h] += threadsPerRank
	}
	total := 0
	for _, t := range perHost {
		total += min(t, cores)
	}
	return total
}

// LaunchLine is what a launcher prints before starting this node's
// workers: a node of a multi-node job starts only its share.
func LaunchLine(nnodes, nodeRank, nprocHere int, m mesh.Mesh, epoch int) string {
	if nnodes > 1 {
		return fmt.Sprintf("launching %d of the job's %d workers on node %d of %d, mesh %v, epoch %d", nprocHere, m.World(), nodeRank, nnodes, m, epoch)
	}
	return fmt.Sprintf("launching %d workers, mesh %v, epoch %d", m.World(), m, epoch)
}
