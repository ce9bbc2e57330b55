package model

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Residency brings units of parameters into memory for the model and
// takes them out again (ZeRO-3); with ZeRO-2 it only collects gradients.
// The model calls Need before it reads a unit's parameters or writes its
// gradients, and Done when it no longer needs them in this pass. In
// backward, Done(u, true) means the unit's gradient contribution of this
// pass is complete: every gradient of the unit has been written (the ones
// the pass did not touch are cleared first).
type Residency interface {
	Need(ctx context.Context, unit int, backward bool) error
	Done(ctx context.Context, unit int, backward bool) error
}

// unitIndex says which unit each part of the model lives in (-1: none).
// The vocabulary-sized weights are cut into row chunks (VocabCuts), one
// unit each: wte[k] on the first stage, the head's weight (wte[k],
// tied[k] or lm_head[k]) on the last.
type unitIndex struct {
	blocks   [][4]int // per block of this stage: its BlockParts
	wte      []int    // the first stage's token embedding chunks (nil: none)
	wteCuts  []int    // their rows: chunk k is rows [wteCuts[k], wteCuts[k+1])
	wpe      int      // the first stage's position embedding (-1: none)
	head     int      // ln_f on the last stage
	headW    []int    // the head weight's chunks on the last stage
	headCuts []int
	tiedHere bool // the head's weight is this stage's wte (one stage, tied)
}

// Pass says which pass PassGroups walks.
type Pass struct {
	Backward      bool
	FrozenEmbed   bool // LoRA: the embeddings take no gradient
	FullRecompute bool // the backward recomputes each block's forward first
}

// PassGroups is how one pass of a stage laid out as l asks for units
// (indices into units, as Units or ShapeUnits list them): group by group,
// each group's units needed together in order and done in reverse.
// Forward: the token embedding's chunks one by one, wpe, each block's
// parts, ln_f with the head weight's first chunk, then its other chunks.
// Backward: the head the same way, the blocks in reverse (each block's
// parts in reverse, or all four together when its forward is recomputed
// first), wpe (the token embedding's gradient leaves as rows, RowAdder,
// without its parameters), nothing of the embeddings when they are frozen
// (LoRA). ZeRO-3 prefetches along it and memory planning walks it.
func PassGroups(units []Unit, l Layout, cfg Config, p Pass) [][]int {
	ix := indexUnits(units, l, cfg)
	var embed, head [][]int
	if !p.Backward {
		for _, u := range ix.wte {
			embed = append(embed, []int{u})
		}
	}
	if ix.wpe >= 0 && !(p.Backward && p.FrozenEmbed) {
		embed = append(embed, []int{ix.wpe})
	}
	if ix.head >= 0 {
		g := []int{ix.head}
		for k, u := range ix.headW {
			if k == 0 {
				head = append(head, append(g, u))
			} else {
				head = append(head, []int{u})
			}
		}
		if len(ix.headW) == 0 {
			head = append(head, g)
		}
	}
	var out [][]int
	if !p.Backward {
		out = append(out, embed...)
		for _, b := range ix.blocks {
			for _, u := range distinct(b[:]) {
				out = append(out, []int{u})
			}
		}
		return append(out, head...)
	}
	out = append(out, head...)
	for i := len(ix.blocks) - 1; i >= 0; i-- {
		b := distinct(ix.blocks[i][:])
		if p.FullRecompute {
			out = append(out, b)
			continue
		}
		for j := len(b) - 1; j >= 0; j-- {
			out = append(out, []int{b[j]})
		}
	}
	return append(out, embed...)
}

// indexUnits finds each part's units in units (-1 or nil: not found).
func indexUnits(units []Unit, l Layout, cfg Config) unitIndex {
	find := func(name string) int {
		for i, u := range units {
			if u.Name == name {
				return i
			}
		}
		return -1
	}
	chunks := func(base string) (ids, cuts []int) {
		for i, u := range units {
			if strings.HasPrefix(u.Name, base+"[") {
				if cuts == nil {
					cuts = []int{0}
				}
				ids = append(ids, i)
				cuts = append(cuts, cuts[len(cuts)-1]+u.span()/max(1, cfg.NEmbd))
			}
		}
		return ids, cuts
	}
	ix := unitIndex{wpe: -1, head: -1}
	if l.First {
		ix.wte, ix.wteCuts = chunks("wte")
		ix.wpe = find("wpe")
	}
	for b := l.FirstBlock; b < l.EndBlock; b++ {
		parts := [4]int{-1, -1, -1, -1}
		block := fmt.Sprintf("h.%d", b)
		for i, u := range units {
			if ub, ps, ok := splitBlockUnit(u.Name); ok && ub == block {
				for _, p := range ps {
					if j := slices.Index(BlockParts[:], p); j >= 0 {
						parts[j] = i
					}
				}
			}
		}
		ix.blocks = append(ix.blocks, parts)
	}
	if l.Last {
		ix.head = find("head")
		switch {
		case cfg.UntiedHead:
			ix.headW, ix.headCuts = chunks("lm_head")
		case l.First:
			ix.headW, ix.headCuts, ix.tiedHere = ix.wte, ix.wteCuts, true
		default:
			ix.headW, ix.headCuts = chunks("tied")
		}
	}
	return ix
}

// PassOrder is PassGroups' units one after another.
func PassOrder(groups [][]int) []int {
	var out []int
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// SetResidency installs r (nil removes it). While one is installed the
// model runs its blocks one after another (no batch lanes, which need
// every block at once), asks r for each unit before using it, and leaves
// the reduced-precision copy of the parameters to SyncPrecisionRange.
func (m *GPT) SetResidency(r Residency) error {
	m.residency = r
	if r == nil {
		return nil
	}
	if len(m.Layout.Chunks) > 1 {
		return fmt.Errorf("model: sharded parameters (ZeRO-2/3) do not run virtual pipeline stages")
	}
	units := m.Units()
	ix := indexUnits(units, m.Layout, m.Config)
	for i, parts := range ix.blocks {
		for j, u := range parts {
			if u < 0 {
				return fmt.Errorf("model: block %d has no %s parameter unit", m.Layout.FirstBlock+i, BlockParts[j])
			}
		}
		m.w.blocks[i].parts = parts
	}
	if m.Layout.Last && ix.head < 0 {
		return fmt.Errorf("model: the head has no parameter unit")
	}
	if m.Layout.First && len(ix.wte) == 0 || m.Layout.Last && len(ix.headW) == 0 {
		return fmt.Errorf("model: the vocabulary weights have no parameter units")
	}
	if n := m.MaxB * m.MaxT; m.Layout.First && m.w.dwte != nil && len(m.rows.vals) < n*m.local.C {
		m.rows = vocabRows{at: make([]int32, n), ids: make([]int32, 0, n), vals: make([]float32, n*m.local.C)}
	}
	m.units = ix
	m.unitLo, m.unitHi = nil, nil
	for _, u := range units {
		m.unitLo, m.unitHi = append(m.unitLo, u.Lo), append(m.unitHi, u.Hi)
	}
	return nil
}

// PassGroups is how this model's forward (or backward, recomputing
// blocks with fullRecompute) asks its residency for units (the
// package-level PassGroups of its units).
func (m *GPT) PassGroups(backward, fullRecompute bool) [][]int {
	return PassGroups(m.Units(), m.Layout, m.Config, Pass{Backward: backward, FrozenEmbed: m.LoRA != nil, FullRecompute: fullRecompute})
}

// headUnit is ln_f's unit (-1 without a residency).
func (m *GPT) headUnit() int {
	if m.residency == nil {
		return -1
	}
	return m.units.head
}

// needPart and donePart bracket part p (BlockParts) of a block's weights,
// unless held (the parts were needed together for a recomputing
// backward). Parts merged into one unit are asked for at the first of
// them in the pass's direction and done with at the last.
func (m *GPT) needPart(ctx context.Context, bw *blockWeights, p int, backward bool) error {
	if m.residency == nil || m.held {
		return nil
	}
	prev := p - 1
	if backward {
		prev = p + 1
	}
	if prev >= 0 && prev < len(bw.parts) && bw.parts[prev] == bw.parts[p] {
		return nil
	}
	return m.need(ctx, bw.parts[p], backward)
}

func (m *GPT) donePart(ctx context.Context, bw *blockWeights, p int, backward bool) error {
	if m.residency == nil || m.held {
		return nil
	}
	next := p + 1
	if backward {
		next = p - 1
	}
	if next >= 0 && next < len(bw.parts) && bw.parts[next] == bw.parts[p] {
		return nil
	}
	return m.done(ctx, bw.parts[p], backward)
}

// holdParts needs all of a block's units at once (in order) for a
// backward that recomputes the block's forward first; releaseParts is
// done with them in reverse.
func (m *GPT) holdParts(ctx context.Context, bw *blockWeights) error {
	if m.residency == nil {
		return nil
	}
	for _, u := range distinct(bw.parts[:]) {
		if err := m.need(ctx, u, true); err != nil {
			return err
		}
	}
	m.held = true
	return nil
}

func (m *GPT) releaseParts(ctx context.Context, bw *blockWeights) error {
	if m.residency == nil {
		return nil
	}
	m.held = false
	us := distinct(bw.parts[:])
	for j := len(us) - 1; j >= 0; j-- {
		if err := m.done(ctx, us[j], true); err != nil {
			return err
		}
	}
	return nil
}

// distinct is us without repeats of the element before (a block's parts
// merged into one unit are adjacent).
func distinct(us []int) []int {
	var out []int
	for i, u := range us {
		if i == 0 || us[i-1] != u {
			out = append(out, u)
		}
	}
	return out
}

// need and done call the residency, if any, for unit u (-1: nothing).
func (m *GPT) need(ctx context.Context, u int, backward bool) error {
	if m.residency == nil || u < 0 {
		return nil
	}
	if err := m.residency.Need(ctx, u, backward); err != nil {
		return fmt.Errorf("parameters of unit %d: %w", u, err)
	}
	return nil
}

func (m *GPT) done(ctx context.Context, u int, backward bool) error {
	if m.residency == nil || u < 0 {
		return nil
	}
	if backward {
		m.Params.clearStaleRange(m.unitLo[u], m.unitHi[u])
	}
	if err := m.residency.Done(ctx, u, backward); err != nil {
		return fmt.Errorf("parameters of unit %d: %w", u, err)
	}
	return nil
}
