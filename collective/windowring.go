package collective

// A large all-reduce through the shared windows goes piece by piece (one
// window call, so one slot, each). Once every rank's piece is in its slot
// (stagePiece), rank r reduces share r of the piece (Chunk of the piece's
// elements) straight out of every slot, writes it into its buffer and
// back into its own slot, and stamps stamp2; then it copies the other
// shares out of their owners' slots. Each element is reduced in the
// order the ring would reduce it (ringPlan: chunk c of the whole buffer
// starts at rank c+1 and goes round to c, the running value on the left,
// Avg dividing at the last step), so the bits are the ring's over any
// transport. Per rank the piece is copied in once, its share reduced out
// of n slots and copied back, and the rest copied out: about 4+2/n bytes
// moved per byte against the ring's 9(n-1)/n, and two waits a piece
// instead of 2(n-1) exchanges.

// ringPiece reduces this rank's share of the piece of window call ws
// (elements [at, at+len(piece)/es) of the call's buffer) and gathers the
// other shares into piece. It reports false if the call failed.
func (cl *call) ringPiece(w *window, ws uint64, at int, piece []byte) bool {
	c := cl.c
	n, me, es := len(c.ranks), c.me, cl.es
	s := int(ws % winSlots)
	count := int(cl.fp.Count)
	elems := len(piece) / es
	lo, hi := Chunk(elems, n, me)
	// Reduce the share in blocks that stay in cache, each cut where the
	// ring's chunks meet (the order changes there).
	for e := lo; e < hi; {
		g := at + e // global element index
		c0 := chunkOf(count, n, g)
		_, cEnd := Chunk(count, n, c0)
		end := min(hi, e+winBlock/es, cEnd-at)
		dst := piece[e*es : end*es]
		// this rank's own value is in its buffer already when it leads
		cl.ringFold(w, s, c0, e*es, dst, (c0+1)%n == me)
		copy(w.slot(me, s, end*es)[e*es:], dst)
		e = end
	}
	w.stamp2(me, s).Store(ws + 1)
	sp := spinner{busyFor: w.busy}
	for _, p := range cl.winPeers() {
		sp.reset()
		for w.stamp2(p, s).Load() != ws+1 {
			if !cl.spin(&sp, p, w) {
				return false
			}
		}
		plo, phi := Chunk(elems, n, p)
		copy(piece[plo*es:phi*es], w.slot(p, s, phi*es)[plo*es:])
	}
	cl.blocked[1].Store(-1)
	w.done(me, s).Store(ws + 1)
	return true
}

// ringFold sets dst to the reduction of chunk c0's bytes at offset off of
// every rank's slot s, in the ring's order: from rank c0+1 round to c0,
// the running value on the left, Avg dividing at the last step. With
// haveFirst, dst already holds rank c0+1's value.
func (cl *call) ringFold(w *window, s, c0, off int, dst []byte, haveFirst bool) {
	n := len(cl.c.ranks)
	end := off + len(dst)
	if !haveFirst {
		copy(dst, w.slot((c0+1)%n, s, end)[off:])
	}
	for j := 2; j <= n; j++ {
		reduceInto(cl.fp.DType, cl.fp.Op, dst, w.slot((c0+j)%n, s, end)[off:], false, j == n, n)
	}
}

// chunkOf is the index of the chunk (Chunk(count, n, ·)) holding element g.
func chunkOf(count, n, g int) int {
	q, r := count/n, count%n
	if g < r*(q+1) {
		return g / (q + 1)
	}
	return r + (g-r*(q+1))/q
}
