package collective

// ReduceScatter and AllGather through the shared windows (3 ranks or
// more). Both work on the group's chunks (Chunk(count, n, c)) in step: a
// piece is the same run of q elements of every chunk (q = the piece's
// elements over n), so one window call carries a share of each chunk.
//
// ReduceScatter: every rank copies its run of every chunk into its slot
// (chunk c's at slot offset c*q) and publishes; rank r then reduces run r
// straight out of every slot into its own chunk, in the ring's order
// (chunk r starts at rank r+1 and goes round to r, the running value on
// the left, Avg dividing at the last step: ringPlan's reduce-scatter), so
// the bits are the message path's.
//
// AllGather: every rank copies its own chunk's run into its slot and
// publishes; each copies the peers' runs out of their slots.

// chunkRun is the length, in elements, of the run of every chunk that one
// window call of a reduce-scatter or all-gather carries.
func (c *Comm) chunkRun(dt DType) int { return max(1, c.pieceElems(dt)/len(c.ranks)) }

// chunkPieces is the number of window calls a reduce-scatter or
// all-gather of fp takes (at least one, so an empty call still meets).
func (c *Comm) chunkPieces(fp fingerprint) int {
	longest := (int(fp.Count) + len(c.ranks) - 1) / len(c.ranks)
	q := c.chunkRun(fp.DType)
	return max(1, (longest+q-1)/q)
}

// chunkWindow runs a reduce-scatter or all-gather through the windows.
func (cl *call) chunkWindow(w *window) {
	c := cl.c
	n, me, es := len(c.ranks), c.me, cl.es
	buf := cl.bufs[0]
	count := int(cl.fp.Count)
	q := c.chunkRun(cl.fp.DType)
	pieces := c.chunkPieces(cl.fp)
	rs := cl.fp.Kind == kReduceScatter
	for k := range pieces {
		ws := cl.wseq + uint64(k)
		s := int(ws % winSlots)
		if !cl.claimSlot(w, ws) {
			return
		}
		// run of chunk ch in this piece: buffer elements [lo, hi), slot
		// offset ch*q
		run := func(ch int) (lo, hi int) {
			a, b := Chunk(count, n, ch)
			return min(a+k*q, b), min(a+(k+1)*q, b)
		}
		mine := w.slot(me, s, n*q*es)
		if rs {
			for ch := range n {
				lo, hi := run(ch)
				copy(mine[ch*q*es:], buf[lo*es:hi*es])
			}
		} else {
			lo, hi := run(me)
			copy(mine[me*q*es:], buf[lo*es:hi*es])
		}
		if !cl.publish(w, ws) {
			return
		}
		if rs {
			lo, hi := run(me)
			for e := lo; e < hi; {
				end := min(hi, e+winBlock/es)
				at := (me*q + e - lo) * es // this run's place in every slot
				cl.ringFold(w, s, me, at, buf[e*es:end*es], false)
				e = end
			}
		} else {
			for _, p := range cl.winPeers() {
				lo, hi := run(p)
				at := p * q * es
				copy(buf[lo*es:hi*es], w.slot(p, s, at+(hi-lo)*es)[at:])
			}
		}
		w.done(me, s).Store(ws + 1)
	}
}
