package collective

// Topology-aware all-reduce (as NCCL's and oneCCL's hierarchical
// algorithms): when a group spans several nodes with the same number L of
// its ranks on each, a large all-reduce runs in three phases, every one a
// pipelined ring:
//
//  1. reduce-scatter inside each node (shared memory): local rank i ends
//     with chunk i of the buffer summed over its node;
//  2. all-reduce of chunk i among the ranks holding it, one per node (the
//     network): each carries 1/L of the buffer instead of all of it;
//  3. all-gather inside each node.
//
// Every chunk is reduced in an order fixed by the topology (node rings,
// then the ring of nodes), so results are bit-identical on every rank and
// every run; they differ from the flat ring's only by float regrouping.

// topology is a group's placement on nodes: local[n] lists the group
// indices on node n (group order), nodes ordered by first appearance.
type topology struct {
	local [][]int
	node  []int // group index -> node
	slot  []int // group index -> index within its node
}

// newTopology groups ranks by label; nil when the labels do not give a
// usable hierarchy (one node, a node with one rank, or unequal nodes).
func newTopology(labels []string) *topology {
	if len(labels) == 0 {
		return nil
	}
	t := &topology{node: make([]int, len(labels)), slot: make([]int, len(labels))}
	index := map[string]int{}
	for g, l := range labels {
		n, ok := index[l]
		if !ok {
			n = len(t.local)
			index[l] = n
			t.local = append(t.local, nil)
		}
		t.node[g], t.slot[g] = n, len(t.local[n])
		t.local[n] = append(t.local[n], g)
	}
	if len(t.local) < 2 {
		return nil
	}
	for _, l := range t.local {
		if len(l) < 2 || len(l) != len(t.local[0]) {
			return nil
		}
	}
	return t
}

// remap returns p with peers taken through members and offsets shifted by
// off (p is a plan over a subgroup and a sub-range).
func remap(p *Plan, members []int, off int) *Plan {
	for i := range p.Sends {
		p.Sends[i].Peer = members[p.Sends[i].Peer]
		p.Sends[i].Off += off
	}
	for i := range p.Recvs {
		p.Recvs[i].Peer = members[p.Recvs[i].Peer]
		p.Recvs[i].Off += off
	}
	return p
}

// then appends b to a as a later phase: b's sends wait for all of a's
// receives (their data is complete), b's receives for all of a's sends
// (the regions they overwrite have left) and, by a fence, for all of a's
// receives (which may write the same regions).
func (a *Plan) then(b *Plan) *Plan {
	ns, nr := len(a.Sends), len(a.Recvs)
	for _, s := range b.Sends {
		s.After += nr
		a.Sends = append(a.Sends, s)
	}
	for i, r := range b.Recvs {
		r.After += ns
		r.Fence = r.Fence || i == 0 // a's receives may write the same regions
		a.Recvs = append(a.Recvs, r)
	}
	return a
}

// hierAllReducePlan is group index me's part of the three-phase
// all-reduce of count elements over topology t.
func hierAllReducePlan(t *topology, me, count, segElems int) *Plan {
	node, slot := t.node[me], t.slot[me]
	locals := t.local[node]
	L := len(locals)
	cross := make([]int, len(t.local)) // the ranks holding chunk `slot`, one per node
	for n, l := range t.local {
		cross[n] = l[slot]
	}
	lo, hi := Chunk(count, L, slot)
	p := remap(ringPlan(L, slot, count, segElems, true, false), locals, 0)
	for i := range p.Recvs {
		p.Recvs[i].Final = false // the chunk is complete only after phase 2
	}
	p.then(remap(ringPlan(len(cross), node, hi-lo, segElems, true, true), cross, lo))
	p.then(remap(ringPlan(L, slot, count, segElems, false, true), locals, 0))
	return p
}
