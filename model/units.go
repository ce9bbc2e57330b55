package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/strand-ml/strand/gemm"
)

// The units ZeRO-2/3 move: how a stage's parameters are cut (block parts
// merged by size, vocabulary chunks), for the model's residency
// (residency.go) and for memory planning (ShapeUnits).

// Unit is a run of parameters that fully sharded data parallelism
// (ZeRO-2/3) moves together: a transformer block or some of its quarters
// (BlockParts), a chunk of a vocabulary weight, wpe, or ln_f. [Lo, Hi) is
// its range in Params.Data and Params.Grad (the trainable parameters).
// With LoRA the trainable parameters are the adapters (a block's, or none)
// and [FrozenLo, FrozenHi) is the unit's range in LoRA.Base.Data, the
// frozen base weights it reads.
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
	return ShapeUnits(ps.shapes(), unitMin)
}

// shapes describes ps's parameters as ParamShapes does (the local shapes;
// what cutting into units and precision ranges read).
func (ps *Params) shapes() []ParamShape {
	out := make([]ParamShape, len(ps.List))
	for i, p := range ps.List {
		out[i] = ParamShape{Name: p.Name, Local: p.Local, TiedCopy: p.TiedCopy}
	}
	return out
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
