package model

import (
	"context"
	"fmt"
	"strings"

	"github.com/strand-ml/strand/internal/pages"
)

// Unit is a run of parameters that fully sharded data parallelism
// (ZeRO-2/3) moves together: one transformer block, the embeddings, or
// the head. [Lo, Hi) is its range in Params.Data and Params.Grad (the
// trainable parameters). With LoRA the trainable parameters are the
// adapters (a block's, or none) and [FrozenLo, FrozenHi) is the unit's
// range in LoRA.Base.Data, the frozen base weights it reads.
type Unit struct {
	Name               string // "h.3", "wte", "wpe", "head" (lm_head, ln_f), "tied" (the last stage's copy of wte)
	Lo, Hi             int
	FrozenLo, FrozenHi int
}

// Size is the number of parameter elements in the unit.
func (u Unit) Size() int { return u.Hi - u.Lo }

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
type unitIndex struct {
	blocks   []int // per block of this stage
	wte, wpe int   // the first stage's embeddings (-1: none)
	head     int   // lm_head and ln_f on the last stage
	headW    int   // the unit holding the head's weight (head, wte or tied)
}

// Units lists this rank's parameter units in layout order (the order of
// Params.List: the head's first, the embeddings' last).
func (m *GPT) Units() []Unit {
	if m.LoRA != nil {
		return m.loraUnits()
	}
	return groupUnits(m.Params)
}

// groupUnits cuts ps into units: runs of parameters with one unit name.
func groupUnits(ps *Params) []Unit {
	shapes := make([]ParamShape, len(ps.List))
	for i, p := range ps.List {
		shapes[i] = ParamShape{Name: p.Name, Local: p.Local, TiedCopy: p.TiedCopy}
	}
	return ShapeUnits(shapes)
}

// ShapeUnits cuts parameters (in layout order, as ParamShapes lists them)
// into units, with offsets as the flat buffers lay them out: Units without
// a model, for memory planning.
func ShapeUnits(shapes []ParamShape) []Unit {
	var out []Unit
	off := 0
	for _, p := range shapes {
		name, n := unitName(p.Name, p.TiedCopy), p.Size()
		if k := len(out); k > 0 && out[k-1].Name == name && out[k-1].Hi == off {
			out[k-1].Hi += n
		} else {
			out = append(out, Unit{Name: name, Lo: off, Hi: off + n})
		}
		off += n
	}
	return out
}

// PassGroups is how one forward (or backward) pass of a stage laid out as
// l asks for units (indices into units, as Units or ShapeUnits list them):
// group by group, each group's units needed together in order and done
// in reverse — the embeddings (wte, wpe), each block, the head with its
// weight's unit when tied; backward the other way, without the
// embeddings when they are frozen (LoRA). ZeRO-3 prefetches along it and
// memory planning walks it.
func PassGroups(units []Unit, l Layout, cfg Config, frozenEmbed, backward bool) [][]int {
	find := func(name string) int {
		for i, u := range units {
			if u.Name == name {
				return i
			}
		}
		return -1
	}
	var embed, head []int
	var blocks [][]int
	if l.First {
		for _, n := range []string{"wte", "wpe"} {
			if i := find(n); i >= 0 {
				embed = append(embed, i)
			}
		}
	}
	for b := l.FirstBlock; b < l.EndBlock; b++ {
		blocks = append(blocks, []int{find(fmt.Sprintf("h.%d", b))})
	}
	if l.Last {
		head = append(head, find("head"))
		if !cfg.UntiedHead {
			w := find("wte")
			if !l.First {
				w = find("tied")
			}
			head = append(head, w)
		}
	}
	var out [][]int
	if !backward {
		if len(embed) > 0 {
			out = append(out, embed)
		}
		out = append(out, blocks...)
		if len(head) > 0 {
			out = append(out, head)
		}
		return out
	}
	if len(head) > 0 {
		out = append(out, head)
	}
	for i := len(blocks) - 1; i >= 0; i-- {
		out = append(out, blocks[i])
	}
	if len(embed) > 0 && !frozenEmbed {
		out = append(out, embed)
	}
	return out
}

// PassOrder is PassGroups' units one after another.
func PassOrder(groups [][]int) []int {
	var out []int
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// loraUnits are the base's units, each with its adapters' range (empty
// when it has none, placed where the adapters before it end).
func (m *GPT) loraUnits() []Unit {
	base := groupUnits(m.LoRA.Base)
	adapters := groupUnits(m.Params)
	out := make([]Unit, len(base))
	at := 0
	for i, b := range base {
		u := Unit{Name: b.Name, FrozenLo: b.Lo, FrozenHi: b.Hi, Lo: at, Hi: at}
		for _, a := range adapters {
			if a.Name == b.Name {
				u.Lo, u.Hi = a.Lo, a.Hi
				at = a.Hi
			}
		}
		out[i] = u
	}
	return out
}

// unitName is the unit a parameter belongs to.
func unitName(name string, tiedCopy bool) string {
	switch {
	case tiedCopy:
		return "tied"
	case strings.HasPrefix(name, "h."):
		rest := name[2:]
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			return "h." + rest[:i]
		}
		return name
	case strings.HasPrefix(name, "wte."):
		return "wte"
	case strings.HasPrefix(name, "wpe."):
		return "wpe"
	default:
		return "head"
	}
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
	units := m.Units()
	find := func(name string) int {
		for i, u := range units {
			if u.Name == name {
				return i
			}
		}
		return -1
	}
	ix := unitIndex{wte: find("wte"), wpe: find("wpe"), head: find("head")}
	for b := m.Layout.FirstBlock; b < m.Layout.EndBlock; b++ {
		i := find(fmt.Sprintf("h.%d", b))
		if i < 0 {
			return fmt.Errorf("model: block %d has no parameter unit", b)
		}
		ix.blocks = append(ix.blocks, i)
	}
	ix.headW = ix.head
	if m.Layout.Last && !m.Config.UntiedHead {
		ix.headW = ix.wte
		if !m.Layout.First {
			ix.headW = find("tied")
		}
	}
	m.units = ix
	m.unitLo, m.unitHi = nil, nil
	for _, u := range units {
		m.unitLo, m.unitHi = append(m.unitLo, u.Lo), append(m.unitHi, u.Hi)
	}
	return nil
}

// PassGroups is how this model's forward (or backward) asks its
// residency for units (the package-level PassGroups of its units).
func (m *GPT) PassGroups(backward bool) [][]int {
	return PassGroups(m.Units(), m.Layout, m.Config, m.LoRA != nil, backward)
}

// SharedUnit is the unit whose gradient two parts of one backward write
// — wte, in the head and in the embedding on a single-stage tied model —
// or -1. ZeRO-2/3 hold its gradient until the second part is done, so it
// is reduced once, as data parallelism reduces it.
func (m *GPT) SharedUnit() int {
	if m.residency == nil || m.LoRA != nil || !m.Layout.First || !m.Layout.Last || m.Config.UntiedHead {
		return -1
	}
	return m.units.wte
}

// blockUnit is block i's unit (-1 without a residency).
func (m *GPT) blockUnit(i int) int {
	if m.residency == nil {
		return -1
	}
	return m.units.blocks[i]
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

// needEmbed and doneEmbed bracket the first stage's embeddings.
func (m *GPT) needEmbed(ctx context.Context, backward bool) error {
	if err := m.need(ctx, m.units.wte, backward); err != nil {
		return err
	}
	return m.need(ctx, m.units.wpe, backward)
}

func (m *GPT) doneEmbed(ctx context.Context, backward bool) error {
	if err := m.done(ctx, m.units.wpe, backward); err != nil {
		return err
	}
	return m.done(ctx, m.units.wte, backward)
}

// needHead and doneHead bracket the head: ln_f (and lm_head) and, when
// the head is tied, the unit holding wte.
func (m *GPT) needHead(ctx context.Context, backward bool) error {
	if err := m.need(ctx, m.units.head, backward); err != nil {
		return err
	}
	if m.units.headW != m.units.head {
		return m.need(ctx, m.units.headW, backward)
	}
	return nil
}

func (m *GPT) doneHead(ctx context.Context, backward bool) error {
	if m.units.headW != m.units.head {
		if err := m.done(ctx, m.units.headW, backward); err != nil {
			return err
		}
	}
	return m.done(ctx, m.units.head, backward)
}

// SetParamBuffers points every parameter's Data and Grad views into data
// and grad (each Params.Count() long) instead of the buffers the model was
// built with; nothing is copied. ZeRO-2/3 use it to move the flat buffers
// into memory that can be handed back page by page (internal/pages). With
// LoRA enabled the adapters' views cannot move: set the buffers before
// EnableLoRA (they then hold the frozen base).
func (m *GPT) SetParamBuffers(data, grad []float32) error {
	if m.LoRA != nil {
		return fmt.Errorf("model: parameter buffers move before LoRA is enabled, not after")
	}
	ps := m.Params
	if len(data) != len(ps.Data) || len(grad) != len(ps.Grad) {
		return fmt.Errorf("model: parameter buffers of %d and %d values for %d parameters", len(data), len(grad), len(ps.Data))
	}
	ps.Data, ps.Grad = data, grad
	for _, p := range ps.List {
		n := p.Size()
		p.Data = data[p.Offset : p.Offset+n : p.Offset+n]
		p.Grad = grad[p.Offset : p.Offset+n : p.Offset+n]
	}
	m.bindWeights()
	m.kvrep = newKVRep(m.Config, m.local, m.tp, m.w.blocks)
	return nil
}

// PageLowPrecision allocates the reduced-precision copy of the parameters
// (bf16 or fp16, if on) in discardable pages without filling it: with
// sharded parameters each unit's part is rounded after it is gathered
// (SyncPrecisionRange) and handed back with it (DiscardPrecisionRange).
func (m *GPT) PageLowPrecision() error {
	m.pagedCopies = true
	if err := m.b16.page(len(m.Params.Data)); err != nil {
		return err
	}
	return m.f16.page(len(m.Params.Data))
}

// SyncPrecisionRange rounds Params.Data[lo:hi] into the reduced-precision
// copy (a no-op in fp32).
func (m *GPT) SyncPrecisionRange(lo, hi int) {
	m.b16.syncRange(m.Params.Data, lo, hi)
	m.f16.syncRange(m.Params.Data, lo, hi)
}

// DiscardPrecisionRange hands the pages of the reduced-precision copy of
// Params.Data[lo:hi] back (see internal/pages).
func (m *GPT) DiscardPrecisionRange(lo, hi int) error {
	if err := m.b16.discard(lo, hi); err != nil {
		return err
	}
	return m.f16.discard(lo, hi)
}

// page allocates the copy in discardable pages (see PageLowPrecision).
func (s *lowPrecision[E]) page(n int) error {
	if !s.on {
		return nil
	}
	w, err := pages.Alloc[E](n)
	if err != nil {
		return err
	}
	s.w, s.paged = w, true
	return nil
}

// pageOrAlloc is page for a mode being turned on; if the mapping fails
// the copy is ordinary memory (the same values, without the saving).
func (s *lowPrecision[E]) pageOrAlloc(n int) {
	if err := s.page(n); err != nil {
		s.w, s.paged = make([]E, n), true
	}
}

func (s *lowPrecision[E]) syncRange(params []float32, lo, hi int) {
	if !s.on {
		return
	}
	if s.paged {
		pages.Prepare(s.w, lo, hi) // rewritten whole: huge pages fault faster
	}
	s.round(s.w[lo:hi], params[lo:hi])
}

func (s *lowPrecision[E]) discard(lo, hi int) error {
	if !s.on || !s.paged {
		return nil
	}
	return pages.Discard(s.w, lo, hi)
}

// InitRange fills, from seed, the parameters lying in Data[lo:hi] (whole
// parameters only), exactly as Init fills them.
func (ps *Params) InitRange(seed uint64, lo, hi int) {
	for _, p := range ps.List {
		if p.Offset >= lo && p.Offset+p.Size() <= hi {
			ps.initParam(p, seed)
		}
	}
}

// MarkStaleRange marks the gradients of the parameters in Grad[lo:hi]
// stale (see ResetGrad): the next backward overwrites them. ZeRO-2/3 call
// it after moving a unit's gradient out, so the next micro-batch starts
// the unit afresh.
func (ps *Params) MarkStaleRange(lo, hi int) {
	if len(ps.stale) != len(ps.List) {
		ps.stale = make([]bool, len(ps.List))
	}
	for i, p := range ps.List {
		if p.Offset >= lo && p.Offset+p.Size() <= hi && !ps.stale[i] {
			ps.stale[i] = true
			ps.nStale++
		}
	}
}

// clearStaleRange clears the still-stale gradients in Grad[lo:hi].
func (ps *Params) clearStaleRange(lo, hi int) {
	if ps.nStale == 0 {
		return
	}
	for i, p := range ps.List {
		if ps.stale[i] && p.Offset >= lo && p.Offset+p.Size() <= hi {
			clear(p.Grad)
			ps.stale[i] = false
			ps.nStale--
		}
	}
}
