package model

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"

	"github.com/strand-ml/strand/internal/pages"
)

// The flat buffers under ZeRO-2/3: moved into discardable pages, the
// rounded copy paged and rounded range by range, a fresh model drawn
// straight into owned ranges, gradients marked stale range by range.

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
