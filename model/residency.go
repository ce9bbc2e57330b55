package model

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/internal/pages"
)

// Unit is a run of parameters that fully sharded data parallelism
// (ZeRO-2/3) moves together: a quarter of a transformer block (BlockParts),
// a chunk of a vocabulary weight, wpe, or ln_f. [Lo, Hi) is its range in Params.Data and Params.Grad (the
// trainable parameters). With LoRA the trainable parameters are the
// adapters (a block's, or none) and [FrozenLo, FrozenHi) is the unit's
// range in LoRA.Base.Data, the frozen base weights it reads.
type Unit struct {
	Name               string // "h.3.attn.in" (a block part), "wte[2]", "wpe", "head" (ln_f), "lm_head[0]", "tied[1]" (the last stage's copy of wte)
	Lo, Hi             int
	FrozenLo, FrozenHi int
}

// Size is the number of parameter elements in the unit.
func (u Unit) Size() int { return u.Hi - u.Lo }

// span is the unit's length in the buffer it is gathered from: its
// trainable range, or with LoRA its frozen base range.
func (u Unit) span() int { return max(u.Hi-u.Lo, u.FrozenHi-u.FrozenLo) }

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

// BlockParts are the units a block is cut into, in forward order: the
// attention's input (ln_1, c_attn), its output projection, the MLP's
// input (ln_2, c_fc) and its output projection. Smaller units than whole
// blocks keep ZeRO-3's working set (the unit computing, the next one
// prefetched, the last gradient reducing) near one block's parameters.
var BlockParts = [4]string{"attn.in", "attn.out", "mlp.in", "mlp.out"}

// blockPart is the part of a block parameter named h.N.rest.
func blockPart(rest string) string {
	for _, p := range []string{"ln_1.", "attn.c_attn.", "attn.q_proj.", "attn.k_proj.", "attn.v_proj."} {
		if strings.HasPrefix(rest, p) {
			return BlockParts[0]
		}
	}
	if strings.HasPrefix(rest, "attn.") {
		return BlockParts[1]
	}
	for _, p := range []string{"ln_2.", "mlp.c_fc.", "mlp.gate_proj.", "mlp.up_proj."} {
		if strings.HasPrefix(rest, p) {
			return BlockParts[2]
		}
	}
	return BlockParts[3]
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

// Units lists this rank's parameter units in layout order (the order of
// Params.List: the head's first, the embeddings' last).
func (m *GPT) Units() []Unit {
	if m.LoRA != nil {
		return m.loraUnits()
	}
	return groupUnits(m.Params, m.unitMin)
}

// DefaultUnitMin is the fewest parameters a block's unit holds: a block's
// parts (BlockParts) smaller than it merge with the parts after them, so
// a small model moves whole blocks and a large one quarters of them. Each
// unit costs two gathers, a reduce-scatter and their page handling a
// step: the small preset at dp2 ran ZeRO-3 steps 1.35-1.45x DDP's in
// quarters (66K-263K parameters each), 1.13-1.19x in whole blocks; gpt2's
// quarters (0.6M-2.4M) keep its working set at one block.
const DefaultUnitMin = 1 << 20

// SetUnitMin sets the fewest parameters of a block's unit (0:
// DefaultUnitMin; 1: every part its own unit) for the next SetResidency.
func (m *GPT) SetUnitMin(n int) { m.unitMin = n }

// groupUnits cuts ps into units (ShapeUnits).
func groupUnits(ps *Params, unitMin int) []Unit {
	shapes := make([]ParamShape, len(ps.List))
	for i, p := range ps.List {
		shapes[i] = ParamShape{Name: p.Name, Local: p.Local, TiedCopy: p.TiedCopy}
	}
	return ShapeUnits(shapes, unitMin)
}

// ShapeUnits cuts parameters (in layout order, as ParamShapes lists them)
// into units, with offsets as the flat buffers lay them out: Units without
// a model, for memory planning. A block's parts (BlockParts) are units,
// runs of them merged up to at least unitMin parameters (0:
// DefaultUnitMin); a vocabulary-sized weight (wte, its tied copy,
// lm_head) is cut into row chunks of about the largest block unit
// (VocabCuts), so ZeRO-3 never gathers the whole table and ZeRO-2/3 never
// hold its whole gradient.
func ShapeUnits(shapes []ParamShape, unitMin int) []Unit {
	if unitMin <= 0 {
		unitMin = DefaultUnitMin
	}
	var parts []Unit
	off := 0
	for _, p := range shapes {
		name, n := unitName(p.Name, p.TiedCopy), p.Size()
		if k := len(parts); k > 0 && parts[k-1].Name == name && parts[k-1].Hi == off {
			parts[k-1].Hi += n
		} else {
			parts = append(parts, Unit{Name: name, Lo: off, Hi: off + n})
		}
		off += n
	}
	out := mergeParts(parts, unitMin)
	block := 0
	for _, u := range out {
		if strings.HasPrefix(u.Name, "h.") {
			block = max(block, u.Size())
		}
	}
	var cut []Unit
	at := 0 // index into shapes of the unit's first parameter
	for _, u := range out {
		p := shapes[at]
		for n := 0; n < u.Size(); at++ {
			n += shapes[at].Size()
		}
		if !vocabUnit(u.Name) || len(p.Local) != 2 || u.Size() == 0 {
			cut = append(cut, u)
			continue
		}
		rows, C := p.Local[0], p.Local[1]
		target := block
		if target == 0 {
			target = u.Size()
		}
		cuts := VocabCuts(rows, C, target)
		for k := 0; k+1 < len(cuts); k++ {
			cut = append(cut, Unit{Name: fmt.Sprintf("%s[%d]", u.Name, k), Lo: u.Lo + cuts[k]*C, Hi: u.Lo + cuts[k+1]*C})
		}
	}
	return cut
}

// mergeParts merges runs of a block's consecutive part units until each
// holds at least unitMin elements (a block's last run may hold fewer) and
// names them (blockUnitName).
func mergeParts(parts []Unit, unitMin int) []Unit {
	var out []Unit
	var run []Unit
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := Unit{Name: blockUnitName(run), Lo: run[0].Lo, Hi: run[len(run)-1].Hi}
		out = append(out, u)
		run = run[:0]
	}
	for _, p := range parts {
		b, _, ok := splitBlockUnit(p.Name)
		if !ok {
			flush()
			out = append(out, p)
			continue
		}
		if len(run) > 0 {
			if rb, _, _ := splitBlockUnit(run[0].Name); rb != b {
				flush()
			}
		}
		run = append(run, p)
		if run[len(run)-1].Hi-run[0].Lo >= unitMin {
			flush()
		}
	}
	flush()
	return out
}

// splitBlockUnit splits a block unit's name into the block ("h.3") and
// its parts (BlockParts names); ok is false for other units.
func splitBlockUnit(name string) (block string, parts []string, ok bool) {
	if !strings.HasPrefix(name, "h.") {
		return "", nil, false
	}
	rest := name[2:]
	i := strings.IndexByte(rest, '.')
	if i < 0 {
		return name, BlockParts[:], true // the whole block
	}
	block, rest = name[:2+i], rest[i+1:]
	switch rest {
	case "attn":
		return block, []string{BlockParts[0], BlockParts[1]}, true
	case "mlp":
		return block, []string{BlockParts[2], BlockParts[3]}, true
	}
	return block, strings.Split(rest, "+"), true
}

// blockUnitName names a run of one block's part units (layout order: the
// last part first): the block ("h.3") when it holds all four, its
// attention or MLP ("h.3.attn") when it holds both of theirs, else its
// parts in forward order ("h.3.mlp.out", "h.3.attn.out+mlp.in").
func blockUnitName(run []Unit) string {
	block, _, _ := splitBlockUnit(run[0].Name)
	var names []string
	for i := len(run) - 1; i >= 0; i-- {
		_, ps, _ := splitBlockUnit(run[i].Name)
		names = append(names, ps...)
	}
	switch strings.Join(names, " ") {
	case strings.Join(BlockParts[:], " "):
		return block
	case BlockParts[0] + " " + BlockParts[1]:
		return block + ".attn"
	case BlockParts[2] + " " + BlockParts[3]:
		return block + ".mlp"
	}
	return block + "." + strings.Join(names, "+")
}

// vocabUnit says unit name is a vocabulary-sized weight, cut into chunks.
func vocabUnit(name string) bool { return name == "wte" || name == "tied" || name == "lm_head" }

// VocabCuts cuts a vocabulary weight of rows x C (a TP rank's rows) into
// chunks for ZeRO-2/3 and returns the cut points 0 = c[0] < ... < c[k] =
// rows. A chunk holds about target elements (a block's parameters) and at
// most a quarter of the table. Cuts fall on the float32 GEMM's k-block
// boundaries for k = rows (gemm.KBlock), the last, partial block a chunk
// of its own, so the head's backward dlnf = dlogits @ W summed chunk by
// chunk has the unsplit product's bits.
func VocabCuts(rows, C, target int) []int {
	kb := gemm.KBlock(rows)
	if kb == 0 || C <= 0 {
		return []int{0, rows}
	}
	q := max(1, min(target, rows*C/4)/C/kb) // k blocks per chunk
	for q > 1 && gemm.KBlock(q*kb) != kb {
		q-- // a chunk must split into the same k blocks as the whole
	}
	lastStart := (rows - 1) / kb * kb
	cuts := []int{0}
	for at := q * kb; at < lastStart; at += q * kb {
		cuts = append(cuts, at)
	}
	if lastStart > 0 {
		cuts = append(cuts, lastStart)
	}
	return append(cuts, rows)
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

// loraUnits are the base's units, each with its adapters' range (empty
// when it has none, placed where the adapters before it end).
func (m *GPT) loraUnits() []Unit {
	base := groupUnits(m.LoRA.Base, m.unitMin)
	adapters := groupUnits(m.Params, 1) // by part: a merged base unit takes its parts'
	out := make([]Unit, len(base))
	at := 0
	for i, b := range base {
		u := Unit{Name: b.Name, FrozenLo: b.Lo, FrozenHi: b.Hi, Lo: at, Hi: at}
		bb, bps, isBlock := splitBlockUnit(b.Name)
		first := true
		for _, a := range adapters {
			ab, aps, ok := splitBlockUnit(a.Name)
			mine := a.Name == b.Name || isBlock && ok && ab == bb && len(aps) == 1 && slices.Contains(bps, aps[0])
			if !mine {
				continue
			}
			if first {
				u.Lo = a.Lo
				first = false
			}
			u.Hi = a.Hi
			at = a.Hi
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
			return "h." + rest[:i] + "." + blockPart(rest[i+1:])
		}
		return name
	case strings.HasPrefix(name, "wte."):
		return "wte"
	case strings.HasPrefix(name, "wpe."):
		return "wpe"
	case strings.HasPrefix(name, "lm_head."):
		return "lm_head"
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

// InitRanges fills, from seed, the elements of dst in ranges (ascending
// [lo, hi) offsets of the flat buffer, as Data lays parameters out)
// exactly as Init fills Data, and nothing else of dst: ZeRO-3 draws a
// fresh model straight into its owned pieces, a rank never holding a
// whole parameter it does not own (one cut by tensor parallelism is drawn
// whole first, as Init draws it).
func (ps *Params) InitRanges(seed uint64, dst []float32, ranges [][2]int) {
	r := 0
	for _, p := range ps.List {
		lo, hi := p.Offset, p.Offset+p.Size()
		for r < len(ranges) && ranges[r][1] <= lo {
			r++
		}
		if r == len(ranges) {
			return
		}
		if ranges[r][0] >= hi {
			continue
		}
		// the ranges cutting p: ranges[r:e]
		e := r
		for e < len(ranges) && ranges[e][0] < hi {
			e++
		}
		if p.init == initNormal && len(p.Data) == Numel(p.Shape) {
			// draw the stream once, keeping what falls in the ranges
			h := fnv.New64a()
			h.Write([]byte(p.Name))
			g := rand.New(rand.NewPCG(seed, h.Sum64()))
			end := min(hi, ranges[e-1][1])
			k := r
			for f := lo; f < end; f++ {
				v := float32(g.NormFloat64() * p.std)
				for k < e && ranges[k][1] <= f {
					k++
				}
				if k < e && f >= ranges[k][0] {
					dst[f] = v
				}
			}
			continue
		}
		local := make([]float32, p.Size())
		q := *p
		q.Data = local
		ps.initParam(&q, seed)
		for k := r; k < e; k++ {
			a, b := max(lo, ranges[k][0]), min(hi, ranges[k][1])
			copy(dst[a:b], local[a-lo:b-lo])
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
