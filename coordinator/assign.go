package coordinator

import (
	"fmt"
	"sort"

	"github.com/strand-ml/strand/mesh"
)

// Joiner is what assignment needs to know about one worker that joined.
type Joiner struct {
	Host      string
	NodeRank  int // -1 when the launcher did not say
	LocalRank int
	WantRank  int // -1 when the coordinator should choose
	Order     int // arrival order, the last tie-breaker
}

// Assign returns the global rank of each joiner (out[i] is joiners[i]'s
// rank) for a world of len(joiners) ranks.
//
// When every joiner asks for a rank (launchers, Slurm and torchrun know
// them) those ranks are used after checking they are a permutation of
// 0..W-1. When none does, ranks are numbered node by node (by node rank,
// then host name, for a stable order across restarts) and by local rank
// within a node, so consecutive ranks — the tensor-parallel peers in
// Megatron's order — share a node whenever the per-node count allows.
// Mixing the two is an error: it means two launchers disagree.
func Assign(joiners []Joiner) ([]int, error) {
	n := len(joiners)
	if n == 0 {
		return nil, fmt.Errorf("assign: no workers")
	}
	asked := 0
	for _, j := range joiners {
		if j.WantRank >= 0 {
			asked++
		}
	}
	out := make([]int, n)
	if asked == n {
		owner := make(map[int]int, n)
		for i, j := range joiners {
			if j.WantRank >= n {
				return nil, fmt.Errorf("assign: worker on %s (local rank %d) asks for rank %d in a world of %d", j.Host, j.LocalRank, j.WantRank, n)
			}
			if prev, dup := owner[j.WantRank]; dup {
				p := joiners[prev]
				return nil, fmt.Errorf("assign: rank %d asked for twice: by %s local rank %d and by %s local rank %d", j.WantRank, p.Host, p.LocalRank, j.Host, j.LocalRank)
			}
			owner[j.WantRank] = i
			out[i] = j.WantRank
		}
		return out, nil
	}
	if asked != 0 {
		return nil, fmt.Errorf("assign: %d of %d workers asked for a specific rank; either all or none must", asked, n)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		x, y := joiners[idx[a]], joiners[idx[b]]
		if x.NodeRank != y.NodeRank {
			return x.NodeRank < y.NodeRank
		}
		if x.Host != y.Host {
			return x.Host < y.Host
		}
		if x.LocalRank != y.LocalRank {
			return x.LocalRank < y.LocalRank
		}
		return x.Order < y.Order
	})
	for r, i := range idx {
		out[i] = r
	}
	return out, nil
}

// Placement is one rank's place in the job: its mesh coordinate and the
// global ranks of its group along each axis (each in group order, so
// Groups[a][Coord along a] == Rank).
type Placement struct {
	Rank  int
	Coord mesh.Coord
	World []int
	DP    []int
	TP    []int
	PP    []int
}

// Place computes every rank's placement in mesh m. It is a pure function of
// the mesh; the coordinator, the worker runtime and `strand status` all use it.
func Place(m mesh.Mesh) ([]Placement, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w := m.World()
	world := make([]int, w)
	for r := range world {
		world[r] = r
	}
	out := make([]Placement, w)
	for r := 0; r < w; r++ {
		out[r] = Placement{
			Rank:  r,
			Coord: m.Coord(r),
			World: world,
			DP:    m.Group(mesh.DataAxis, r),
			TP:    m.Group(mesh.TensorAxis, r),
			PP:    m.Group(mesh.PipelineAxis, r),
		}
	}
	return out, nil
}

// SpreadTP reports tensor-parallel groups whose ranks sit on more than one
// host (hosts[r] is rank r's host): TP traffic is the heaviest and should
// stay on one node. The result is empty for a good placement.
func SpreadTP(m mesh.Mesh, hosts []string) [][]int {
	var bad [][]int
	for _, g := range m.Groups(mesh.TensorAxis) {
		for _, r := range g[1:] {
			if hosts[r] != hosts[g[0]] {
				bad = append(bad, g)
				break
			}
		}
	}
	return bad
}
