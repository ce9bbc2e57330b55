package zero

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/internal/pages"
	"github.com/strand-ml/strand/model"
)

// Gathering in the compute precision (issue: "gather in the compute
// precision; fp32 master weights and moments stay sharded"). Under
// bf16/fp16 a ZeRO-3 unit whose large weights are read only through the
// model's rounded copy (model.LowPrecisionRanges) is gathered as two
// all-gathers over the shard group:
//
//	the rounded copy   each owner rounds its master piece into the copy;
//	                   the gather moves the whole unit in bf16 (2 bytes an
//	                   element; fp16's emulation holds 4)
//	float32 the rest   the unit's norms and biases (few elements): each
//	                   rank packs the float32 master elements of them it
//	                   owns into a slot of equal size on every rank
//	                   (slot), the gather fills every rank's slot, and each
//	                   rank unpacks them into Params.Data by the owners'
//	                   ranges (small)
//
// The float32 values of the large weights never become resident. The
// rounded values are the ones a float32 gather rounded locally would
// give (rounding is elementwise), so losses keep their bits.

// GatherBytes is what gathering each unit makes resident under ZeRO-3, in
// bytes: float32 values and, with a rounded copy of copyBytes an element
// rounded locally, the copy; or for a unit holding low-precision ranges
// (low, model.LowPrecisionRanges, nil in float32) the copy of the whole
// unit and float32 values of the rest. A LoRA frozen base (frozen) is
// gathered in float32 (its products round their operands on the fly).
// The Sharder's core counts these; memory planning (memplan) too.
func GatherBytes(units []model.Unit, low [][2]int, copyBytes int, frozen bool) []int {
	out := make([]int, len(units))
	for i, u := range units {
		if frozen {
			out[i] = 4 * (u.FrozenHi - u.FrozenLo)
			continue
		}
		n := u.Size()
		l := overlap(low, u.Lo, u.Hi)
		if copyBytes > 0 && l > 0 {
			out[i] = copyBytes*n + 4*(n-l)
		} else {
			out[i] = (4 + copyBytes) * n
		}
	}
	return out
}

// overlap is how many elements of [lo, hi) the ranges cover.
func overlap(ranges [][2]int, lo, hi int) int {
	n := 0
	for _, r := range ranges {
		n += max(0, min(hi, r[1])-max(lo, r[0]))
	}
	return n
}

// planLowGathers decides which units gather in the compute precision and
// cuts their float32-read ranges by owner.
func (s *Sharder) planLowGathers(low [][2]int) {
	n, G := len(s.units), s.shard.Size()
	s.low, s.lowNow, s.small, s.slot, s.slots = make([]bool, n), make([]bool, n), make([][][][2]int, n), make([]int, n), make([][]float32, n)
	for i, u := range s.units {
		if len(low) == 0 || overlap(low, u.Lo, u.Hi) == 0 {
			continue
		}
		s.low[i] = true
		rest := complement(low, u.Lo, u.Hi)
		s.small[i] = make([][][2]int, G)
		for r := 0; r < G; r++ {
			a, b := collective.Chunk(u.Size(), G, r)
			s.small[i][r] = intersect(rest, u.Lo+a, u.Lo+b)
			s.slot[i] = max(s.slot[i], overlap(s.small[i][r], u.Lo+a, u.Lo+b))
		}
	}
}

// complement is [lo, hi) without the ranges (ascending).
func complement(ranges [][2]int, lo, hi int) [][2]int {
	var out [][2]int
	at := lo
	for _, r := range ranges {
		a, b := max(lo, r[0]), min(hi, r[1])
		if a >= b {
			continue
		}
		if a > at {
			out = append(out, [2]int{at, a})
		}
		at = b
	}
	if at < hi {
		out = append(out, [2]int{at, hi})
	}
	return out
}

// intersect is the parts of the ranges inside [lo, hi).
func intersect(ranges [][2]int, lo, hi int) [][2]int {
	var out [][2]int
	for _, r := range ranges {
		if a, b := max(lo, r[0]), min(hi, r[1]); a < b {
			out = append(out, [2]int{a, b})
		}
	}
	return out
}

// startLowGather starts unit u's two gathers (see the top of the file).
func (s *Sharder) startLowGather(ctx context.Context, u int) {
	g, o := s.grange[u], s.gown[u]
	b16, f16 := s.m.PrecisionCopy()
	var buf collective.Buffer
	switch {
	case b16 != nil:
		pages.Prepare(b16, g[0], g[1])
		buf = collective.BF16(b16[g[0]:g[1]])
	case f16 != nil:
		pages.Prepare(f16, g[0], g[1])
		buf = collective.F32(f16[g[0]:g[1]])
	default:
		// the model's precision is not the one the sharder was made for
		if s.err == nil {
			s.err = fmt.Errorf("zero: the model computes in %s, the sharder was made for %s (Options.Precision)", s.m.Precision(), s.opts.Precision)
		}
		s.gathers[u] = s.shard.AllGatherAsync(ctx, collective.F32(s.gdata[g[0]:g[1]]))
		return
	}
	s.m.RoundRange(s.gmaster, o[0], o[1])
	h := s.shard.AllGatherAsync(ctx, buf)
	s.gathers[u] = h
	s.traceOp(h, "all-gather "+s.units[u].Name, buf.Len()*buf.DType().Size())
	if s.slot[u] == 0 {
		return
	}
	if s.slots[u] == nil {
		s.slots[u] = make([]float32, s.slot[u]*s.shard.Size())
	}
	me := s.shard.Rank()
	mine := s.slots[u][me*s.slot[u] : (me+1)*s.slot[u]]
	k := 0
	for _, r := range s.small[u][me] {
		k += copy(mine[k:], s.gmaster[r[0]:r[1]])
	}
	s.gathers2[u] = s.shard.AllGatherAsync(ctx, collective.F32(s.slots[u]))
}

// unpackSmall puts unit u's gathered float32 parameters in place.
func (s *Sharder) unpackSmall(u int) {
	for r, rs := range s.small[u] {
		slot := s.slots[u][r*s.slot[u] : (r+1)*s.slot[u]]
		k := 0
		for _, x := range rs {
			k += copy(s.gdata[x[0]:x[1]], slot[k:])
		}
	}
}
