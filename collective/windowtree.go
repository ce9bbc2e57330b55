package collective

// The reduction of a small all-reduce through the windows, in recursive
// doubling's order (window.go).

// reduceWindow sets buf to the all-reduce of every rank's slot s in
// recursive doubling's order (recursiveDoublingPlan): with pow the
// largest power of two <= n, leaf i < pow is x_i (op) x_{i+pow} for the
// ranks folded in, else x_i; each aligned block's value is its lower
// half's (op) its upper half's; Avg divides at the root. Blocks of
// winBlock bytes keep the partial results in cache.
func (cl *call) reduceWindow(w *window, s int, buf []byte) {
	c := cl.c
	n, me := len(c.ranks), c.me
	if n == 2 {
		// x0 (op) x1 in one pass over buf, which holds this rank's own.
		reduceInto(cl.fp.DType, cl.fp.Op, buf, w.slot(1-me, s, len(buf)), me == 1, true, n)
		return
	}
	pow := 1
	for pow*2 <= n {
		pow *= 2
	}
	depth := 0
	for 1<<depth < pow {
		depth++
	}
	for len(cl.scratch) < depth { // kept with the call record
		cl.scratch = append(cl.scratch, make([]byte, winBlock))
	}
	for lo := 0; lo < len(buf); lo += winBlock {
		hi := min(lo+winBlock, len(buf))
		cl.tree(w, s, buf[lo:hi], lo, 0, pow, pow, n, 0)
	}
}

// winBlock is reduceWindow's block (a multiple of every element size).
const winBlock = 8 << 10

// tree sets dst to the value of the aligned block of leaves [leaf,
// leaf+size) over the bytes [off, off+len(dst)) of the slots.
func (cl *call) tree(w *window, s int, dst []byte, off, leaf, size, pow, n, level int) {
	dt, op := cl.fp.DType, cl.fp.Op
	if size == 1 {
		if leaf != cl.c.me || &dst[0] != &cl.bufs[0][off] {
			copy(dst, w.slot(leaf, s, off+len(dst))[off:])
		} // else dst is this rank's own value, in place in its buffer
		if leaf+pow < n {
			reduceInto(dt, op, dst, w.slot(leaf+pow, s, off+len(dst))[off:], false, false, n)
		}
		return
	}
	half := size / 2
	cl.tree(w, s, dst, off, leaf, half, pow, n, level+1)
	tmp := cl.scratch[level][:len(dst)]
	cl.tree(w, s, tmp, off, leaf+half, half, pow, n, level+1)
	reduceInto(dt, op, dst, tmp, false, size == pow, n)
}
