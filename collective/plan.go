package collective

// A plan is what one rank does in one collective call, as data: an ordered
// list of sends and an ordered list of receives, run by two lanes that
// proceed concurrently (exec.go). Algorithms are pure functions from
// (group size, this rank, element count, ...) to a plan, so they are
// tested without any transport (plan_test.go simulates all ranks at once).
//
// Offsets and lengths are in elements. Peers are group indices.

// Step is one send or receive of the element range [Off, Off+N) of buffer
// Buf (0: the call's data buffer; 1: AllToAll's output buffer).
type Step struct {
	Peer   int
	Buf    int
	Off, N int
	// Receive only: combine the incoming elements into the buffer with the
	// call's op instead of overwriting. PeerFirst puts the incoming value
	// on the left of the op; Final marks the step that completes these
	// elements (Avg divides there).
	Reduce, PeerFirst, Final bool
	// After: do not start until this many steps of the other lane are done
	// (a send waits for the receive that produced its data; a receive
	// waits for the send of the region it will overwrite).
	After int
	// Fence (receive only): do not post this receive before every earlier
	// receive has completed. Executors post receives ahead and a chunked
	// receive reduces as bytes arrive, so two receives into one region
	// (a hierarchical all-reduce's phases) would otherwise overlap.
	Fence bool
}

// Plan is one rank's part of a collective.
type Plan struct {
	Sends, Recvs []Step
	// Copies are local moves done before any step (AllToAll's own block).
	Copies []Copy
}

// receivesFrom reports whether the plan receives anything from group rank
// peer.
func (p *Plan) receivesFrom(peer int) bool {
	for _, s := range p.Recvs {
		if s.Peer == peer {
			return true
		}
	}
	return false
}

// sendsTo reports whether the plan sends anything to group rank peer.
func (p *Plan) sendsTo(peer int) bool {
	for _, s := range p.Sends {
		if s.Peer == peer {
			return true
		}
	}
	return false
}

// Copy moves N elements within or between the call's buffers.
type Copy struct{ SrcBuf, SrcOff, DstBuf, DstOff, N int }

// Chunk returns the element range [lo, hi) that group index i owns when
// count elements are split over n ranks: the first count%n ranks get one
// element more. ReduceScatter leaves rank i's result there; AllGather
// takes rank i's contribution from there.
func Chunk(count, n, i int) (lo, hi int) {
	q, r := count/n, count%n
	lo = i*q + min(i, r)
	hi = lo + q
	if i < r {
		hi++
	}
	return lo, hi
}

func mod(x, n int) int { return ((x % n) + n) % n }

// segments cuts [lo, hi) into pieces of at most segElems elements (at
// least one element each); an empty range has no pieces.
func segments(lo, hi, segElems int) [][2]int {
	n := hi - lo
	if n <= 0 {
		return nil
	}
	k := (n + segElems - 1) / segElems
	out := make([][2]int, k)
	for j := range out {
		a, b := Chunk(n, k, j)
		out[j] = [2]int{lo + a, b - a}
	}
	return out
}

// ringPlan is the bandwidth-optimal ring: a reduce-scatter phase (rs) in
// which chunk c travels around the ring collecting every rank's
// contribution and ends, fully reduced, at its owner c; then an all-gather
// phase (ag) in which each owner's chunk travels around once more. Each
// chunk is cut into segments so that reducing segment j overlaps sending
// segment j-1. Every chunk is reduced in the same fixed ring order
// (starting at rank c+1), so results do not depend on timing.
func ringPlan(n, me, count, segElems int, rs, ag bool) *Plan {
	p := &Plan{}
	if n == 1 {
		return p
	}
	right, left := mod(me+1, n), mod(me-1, n)
	seg := func(c int) [][2]int { lo, hi := Chunk(count, n, c); return segments(lo, hi, segElems) }
	var lastRecv []int    // recv-lane counts after each segment received in the previous step
	var rsSendEnd [][]int // send-lane counts after each RS send, by step and segment
	if rs {
		for k := 0; k < n-1; k++ {
			sc, rc := mod(me-k-1, n), mod(me-k-2, n)
			var ends []int
			for j, s := range seg(sc) {
				after := 0
				if k > 0 {
					after = lastRecv[j] // chunk sc was received (and reduced) in step k-1
				}
				p.Sends = append(p.Sends, Step{Peer: right, Off: s[0], N: s[1], After: after})
				ends = append(ends, len(p.Sends))
			}
			rsSendEnd = append(rsSendEnd, ends)
			lastRecv = lastRecv[:0:0]
			for _, s := range seg(rc) {
				p.Recvs = append(p.Recvs, Step{Peer: left, Off: s[0], N: s[1], Reduce: true, PeerFirst: true, Final: k == n-2})
				lastRecv = append(lastRecv, len(p.Recvs))
			}
		}
	}
	if ag {
		for k := 0; k < n-1; k++ {
			sc, rc := mod(me-k, n), mod(me-k-1, n)
			for j, s := range seg(sc) {
				after := 0
				if k > 0 || rs {
					after = lastRecv[j] // own chunk finished by RS, or chunk received in step k-1
				}
				p.Sends = append(p.Sends, Step{Peer: right, Off: s[0], N: s[1], After: after})
			}
			var cur []int
			for j, s := range seg(rc) {
				after := 0
				if rs {
					after = rsSendEnd[k][j] // chunk rc left this rank in RS step k
				}
				p.Recvs = append(p.Recvs, Step{Peer: left, Off: s[0], N: s[1], After: after})
				cur = append(cur, len(p.Recvs))
			}
			lastRecv = cur
		}
	}
	return p
}

// recursiveDoublingPlan is the latency-optimal all-reduce: log2(n) rounds
// in which partners exchange their whole buffers and both combine them
// with the lower rank's value on the left, so partners hold identical bits
// after every round. For n not a power of two, the ranks beyond the
// largest power of two first fold their data into a partner and get the
// result back at the end.
//
// The partner in the round of block size 2*mask is me ^ (2*mask-1), the
// mirror image of me in its aligned block, rather than me ^ mask: both lie
// in the other half of the block, so the sums are the same, but at 4 ranks
// the mirror partners are exactly the ring neighbours (0: 1 then 3), who
// get our fingerprint anyway. So a rank talks to 2 peers instead of 3, and
// each fingerprint shares a write with the data (runInline).
func recursiveDoublingPlan(n, me, count int) *Plan {
	p := &Plan{}
	if n == 1 || count == 0 {
		return p
	}
	pow := 1
	for pow*2 <= n {
		pow *= 2
	}
	extra := n - pow
	whole := Step{Off: 0, N: count}
	if me >= pow { // folded rank: hand over, get the result back
		s := whole
		s.Peer = me - pow
		p.Sends = append(p.Sends, s)
		r := whole
		r.Peer, r.After = me-pow, 1
		p.Recvs = append(p.Recvs, r)
		return p
	}
	if me < extra {
		r := whole
		r.Peer, r.Reduce = me+pow, true // lower rank on the left
		p.Recvs = append(p.Recvs, r)
	}
	for mask := 1; mask < pow; mask <<= 1 {
		partner := me ^ (2*mask - 1)
		s := whole
		s.Peer, s.After = partner, len(p.Recvs)
		p.Sends = append(p.Sends, s)
		r := whole
		r.Peer, r.Reduce, r.PeerFirst, r.After = partner, true, partner < me, len(p.Sends)
		r.Final = mask*2 == pow
		p.Recvs = append(p.Recvs, r)
	}
	if pow == 1 { // n == 1 handled above; keeps Final logic obvious
		return p
	}
	if me < extra {
		s := whole
		s.Peer, s.After = me+pow, len(p.Recvs)
		p.Sends = append(p.Sends, s)
	}
	return p
}

// binomialChildren lists relative ranks v's children in a binomial tree of
// n ranks rooted at relative rank 0, largest subtree first, and its parent
// (-1 for the root).
func binomialChildren(n, v int) (parent int, children []int) {
	low := 1
	for low < n {
		low <<= 1
	}
	parent = -1
	if v != 0 {
		low = v & -v
		parent = v - low
	}
	for m := low >> 1; m >= 1; m >>= 1 {
		if v+m < n {
			children = append(children, v+m)
		}
	}
	return parent, children
}

// treeBroadcastPlan: root's data flows down a binomial tree (log2 n
// hops), best for small messages.
func treeBroadcastPlan(n, me, root, count int) *Plan {
	p := &Plan{}
	if n == 1 || count == 0 {
		return p
	}
	v := mod(me-root, n)
	parent, children := binomialChildren(n, v)
	after := 0
	if parent >= 0 {
		p.Recvs = append(p.Recvs, Step{Peer: mod(parent+root, n), N: count})
		after = 1
	}
	for _, c := range children {
		p.Sends = append(p.Sends, Step{Peer: mod(c+root, n), N: count, After: after})
	}
	return p
}

// chainBroadcastPlan: root's data flows down the chain root, root+1, ...
// in segments, so every link is busy at once: best for large messages.
func chainBroadcastPlan(n, me, root, count, segElems int) *Plan {
	p := &Plan{}
	if n == 1 {
		return p
	}
	v := mod(me-root, n)
	for j, s := range segments(0, count, segElems) {
		after := 0
		if v > 0 {
			p.Recvs = append(p.Recvs, Step{Peer: mod(me-1, n), Off: s[0], N: s[1]})
			after = j + 1
		}
		if v < n-1 {
			p.Sends = append(p.Sends, Step{Peer: mod(me+1, n), Off: s[0], N: s[1], After: after})
		}
	}
	return p
}

// treeReducePlan: contributions flow up a binomial tree to the root; each
// rank combines its children in a fixed order (its own value on the left).
func treeReducePlan(n, me, root, count int) *Plan {
	p := &Plan{}
	if n == 1 || count == 0 {
		return p
	}
	v := mod(me-root, n)
	parent, children := binomialChildren(n, v)
	for i := len(children) - 1; i >= 0; i-- { // smallest subtree first
		p.Recvs = append(p.Recvs, Step{Peer: mod(children[i]+root, n), N: count, Reduce: true, Final: v == 0 && i == 0})
	}
	if parent >= 0 {
		p.Sends = append(p.Sends, Step{Peer: mod(parent+root, n), N: count, After: len(p.Recvs)})
	}
	return p
}

// ringReducePlan: a ring reduce-scatter, then every rank sends its
// finished chunk to the root. Bandwidth-optimal for large messages.
func ringReducePlan(n, me, root, count, segElems int) *Plan {
	p := ringPlan(n, me, count, segElems, true, false)
	if n == 1 {
		return p
	}
	finished := len(p.Recvs) // all RS receives: own chunk complete
	if me != root {
		lo, hi := Chunk(count, n, me)
		if hi > lo {
			p.Sends = append(p.Sends, Step{Peer: root, Off: lo, N: hi - lo, After: finished})
		}
		return p
	}
	sent := len(p.Sends)
	for c := 0; c < n; c++ {
		lo, hi := Chunk(count, n, c)
		if c != root && hi > lo {
			p.Recvs = append(p.Recvs, Step{Peer: c, Off: lo, N: hi - lo, After: sent})
		}
	}
	return p
}

// barrierPlan is the dissemination barrier: in round k every rank signals
// rank+2^k and waits for rank-2^k; after ceil(log2 n) rounds every rank
// has (transitively) heard from every other.
func barrierPlan(n, me int) *Plan {
	p := &Plan{}
	for d := 1; d < n; d <<= 1 {
		p.Sends = append(p.Sends, Step{Peer: mod(me+d, n), After: len(p.Recvs)})
		p.Recvs = append(p.Recvs, Step{Peer: mod(me-d, n)})
	}
	return p
}

// allToAllPlan: block j of buffer 0 goes to rank j, block i of buffer 1
// comes from rank i; step k pairs rank me with me+k (send) and me-k
// (receive) so every link carries one block per step.
func allToAllPlan(n, me, block int) *Plan {
	p := &Plan{Copies: []Copy{{SrcBuf: 0, SrcOff: me * block, DstBuf: 1, DstOff: me * block, N: block}}}
	if block == 0 {
		return &Plan{}
	}
	for k := 1; k < n; k++ {
		to, from := mod(me+k, n), mod(me-k, n)
		p.Sends = append(p.Sends, Step{Peer: to, Off: to * block, N: block})
		p.Recvs = append(p.Recvs, Step{Peer: from, Buf: 1, Off: from * block, N: block})
	}
	return p
}
