package zero

import "github.com/strand-ml/strand/model"

// core is the sharder's bookkeeping without any communication: which
// units are gathered, which one is prefetched, which gradients are
// resident and which reduce-scatter must finish before what. The Sharder
// carries out its decisions; memory planning (Peaks) runs it alone over
// one pass to predict the same peaks the Sharder then measures. It is
// pure and table-tested (core_test.go).
type core struct {
	size   []int    // per unit: elements gathered (ZeRO-3)
	gsize  []int    // per unit: elements of its trainable gradient
	order  [2][]int // the units one forward [0] and backward [1] pass asks for (model.PassOrder)
	pos    [2]int   // where in each order the next Need is expected
	gather bool     // ZeRO-3: units are gathered and handed back
	keep   bool     // keep forward's units until their backward

	resident []bool // gathered or being gathered
	inUse    []int  // Needs without their Done
	kept     []bool // kept from forward for backward
	pinned   bool   // everything stays until releaseAll
	pref     int    // a prefetched unit not yet needed, or -1
	hits     int    // Needs that found their unit prefetched

	gradLive []bool // the unit's gradient holds values not yet reduced
	rsUnit   int    // the unit whose reduce-scatter is in flight, or -1
	rsPend   []bool // per unit: a reduce-scatter not yet finished

	live, peak   int // gathered elements now and at most
	liveG, peakG int // resident gradient elements now and at most
}

func newCore(size, gsize []int, fwd, bwd []int, gather, keep bool) *core {
	n := len(size)
	return &core{size: size, gsize: gsize, order: [2][]int{fwd, bwd}, gather: gather, keep: keep,
		resident: make([]bool, n), inUse: make([]int, n), kept: make([]bool, n), pref: -1,
		gradLive: make([]bool, n), rsUnit: -1, rsPend: make([]bool, n)}
}

// needSteps is what the Sharder does for a Need, in this order: finish
// the unit's reduce-scatter (finish >= 0), hand back a prefetch that was
// never used (drop >= 0), start the gathers of start (the unit itself
// when absent, then the next one), and wait for the unit's gather.
type needSteps struct {
	finish, drop int
	start        []int
}

// doneSteps is what the Sharder does for a Done: finish the reduce-scatter
// of finish, start the unit's own (rs), hand back the unit (release).
type doneSteps struct {
	finish  int
	rs      bool
	release bool
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// next advances the pass's position past u and returns the unit asked
// for after it (-1 at the end of the pass). A u not found after the
// position starts a new pass.
func (c *core) next(u int, backward bool) int {
	o, p := c.order[b2i(backward)], &c.pos[b2i(backward)]
	at := -1
	for i := *p; i < len(o); i++ {
		if o[i] == u {
			at = i
			break
		}
	}
	if at < 0 {
		for i := range o {
			if o[i] == u {
				at = i
				break
			}
		}
	}
	if at < 0 {
		return -1
	}
	*p = at + 1
	if *p >= len(o) {
		*p = 0
		return -1
	}
	return o[*p]
}

func (c *core) need(u int, backward bool) needSteps {
	st := needSteps{finish: -1, drop: -1}
	if backward {
		if c.rsPend[u] {
			st.finish = u
			c.rsDone(u)
		}
		if !c.gradLive[u] {
			c.gradLive[u] = true
			c.liveG += c.gsize[u]
			c.peakG = max(c.peakG, c.liveG)
		}
	}
	next := c.next(u, backward)
	if !c.gather {
		return st
	}
	if c.pref == u {
		c.pref = -1
		c.hits++
	}
	if !c.resident[u] {
		c.gatherUnit(u)
		st.start = append(st.start, u)
	}
	c.inUse[u]++
	if next >= 0 && !c.resident[next] {
		if p := c.pref; p >= 0 && c.inUse[p] == 0 && !c.kept[p] && !c.pinned {
			st.drop = p
			c.releaseUnit(p)
		}
		c.pref = -1
		c.gatherUnit(next)
		c.pref = next
		st.start = append(st.start, next)
	}
	return st
}

func (c *core) done(u int, backward bool) doneSteps {
	st := doneSteps{finish: -1}
	if backward {
		// one reduce-scatter in flight: at most two units' gradients
		if c.rsUnit >= 0 && c.rsUnit != u {
			st.finish = c.rsUnit
			c.rsDone(c.rsUnit)
		}
		st.rs = true
		c.rsPend[u] = true
		c.rsUnit = u
	}
	if !c.gather {
		return st
	}
	c.inUse[u]--
	if c.inUse[u] > 0 || c.pinned {
		return st
	}
	if !backward && c.keep {
		c.kept[u] = true
		return st
	}
	st.release = true
	c.releaseUnit(u)
	return st
}

// rsDone records that unit u's reduce-scatter finished: its gradient is
// handed back.
func (c *core) rsDone(u int) {
	c.rsPend[u] = false
	if c.rsUnit == u {
		c.rsUnit = -1
	}
	if c.gradLive[u] {
		c.gradLive[u] = false
		c.liveG -= c.gsize[u]
	}
}

// finishAll marks every unit's reduce-scatter finished and returns those
// that were pending (before the embedding's gradient rows are added, and
// at the end of the step).
func (c *core) finishAll() []int {
	var out []int
	for u, p := range c.rsPend {
		if p {
			out = append(out, u)
			c.rsDone(u)
		}
	}
	return out
}

// dropPrefetch releases an unused prefetch (end of the step).
func (c *core) dropPrefetch() int {
	p := c.pref
	c.pref = -1
	if p < 0 || c.inUse[p] > 0 || c.kept[p] || c.pinned {
		return -1
	}
	c.releaseUnit(p)
	return p
}

// releaseAll hands back every gathered unit and returns them.
func (c *core) releaseAll() []int {
	var out []int
	c.pref, c.pinned = -1, false
	for u := range c.resident {
		c.inUse[u] = 0
		if c.resident[u] {
			out = append(out, u)
			c.releaseUnit(u)
		}
	}
	c.pos = [2]int{}
	return out
}

// gatherAll gathers every absent unit and pins them all.
func (c *core) gatherAll() []int {
	var out []int
	for u := range c.resident {
		if !c.resident[u] {
			out = append(out, u)
			c.gatherUnit(u)
		}
	}
	c.pinned, c.pref = true, -1
	return out
}

func (c *core) gatherUnit(u int) {
	c.resident[u] = true
	c.live += c.size[u]
	c.peak = max(c.peak, c.live)
}

func (c *core) releaseUnit(u int) {
	if !c.resident[u] {
		return
	}
	c.resident[u], c.kept[u] = false, false
	c.live -= c.size[u]
}

// Peaks runs one forward and one backward pass of a stage through the
// sharder's bookkeeping and returns the most gathered parameter elements
// and the most resident gradient elements at once: what the Sharder will
// measure (Use), for memory planning. size and gsize are the units'
// gathered and gradient elements, fwd and bwd model.PassGroups'; gather is
// ZeRO-3, keep --reshard-after-forward=false.
func Peaks(size, gsize []int, fwd, bwd [][]int, gather, keep bool) (params, grads int) {
	c := newCore(size, gsize, model.PassOrder(fwd), model.PassOrder(bwd), gather, keep)
	for _, backward := range []bool{false, true} {
		groups := fwd
		if backward {
			groups = bwd
		}
		for _, g := range groups {
			for _, u := range g {
				c.need(u, backward)
			}
			for i := len(g) - 1; i >= 0; i-- {
				c.done(g[i], backward)
			}
		}
	}
	c.finishAll()
	c.dropPrefetch()
	return c.peak, c.peakG
}
