package model

import "unsafe"

// lowPrecision is the state of one reduced-precision product mode (bf16.go,
// fp16.go): a rounded copy of the parameters and scratch for the two
// operands of a product that are not parameters. E is how a rounded value
// is stored: uint16 bfloat16 bits, or float32 holding an fp16-rounded value.
type lowPrecision[E uint16 | float32] struct {
	on    bool
	w     []E    // (len(Params.Data)) rounded copy of the parameters
	slot  [2][]E // scratch for the two non-parameter operands of one product
	round func(dst []E, src []float32)
	paged bool // w is in discardable pages, synced unit by unit (residency.go)
}

// enable allocates the scratch for m's widest product operand and syncs
// the rounded parameters.
func (s *lowPrecision[E]) enable(m *GPT, round func(dst []E, src []float32)) {
	s.on, s.round = true, round
	d := m.local
	widest := max(d.C, d.QKVl, d.FCl, d.Hl, d.Vl)
	for i := range s.slot {
		s.slot[i] = make([]E, m.MaxB*m.MaxT*widest)
	}
	if m.pagedCopies {
		// sharded parameters: the copy is paged and rounded unit by unit
		// (PageLowPrecision, SyncPrecisionRange)
		s.pageOrAlloc(len(m.Params.Data))
		return
	}
	s.sync(m.Params.Data)
}

// sync rounds params into the copy (after anything changed them).
func (s *lowPrecision[E]) sync(params []float32) {
	if !s.on || s.paged {
		return
	}
	if len(s.w) != len(params) { // Params rebuilt (e.g. adapters added)
		s.w = make([]E, len(params))
	}
	s.round(s.w, params)
}

// bytes is the memory of the copy and scratch.
func (s *lowPrecision[E]) bytes() int64 {
	var e E
	return int64(unsafe.Sizeof(e)) * int64(len(s.w)+len(s.slot[0])+len(s.slot[1]))
}

// operand returns x (the span a product reads: rows x cols with leading
// dimension ld, transposed or not) rounded: a view of the synced copy
// when x lies in params, otherwise x rounded into scratch slot.
func (s *lowPrecision[E]) operand(params, x []float32, trans bool, rows, cols, ld, slot int) []E {
	if trans {
		rows, cols = cols, rows
	}
	n := (rows-1)*ld + cols
	if len(params) > 0 && len(x) > 0 {
		base, at := uintptr(unsafe.Pointer(&params[0])), uintptr(unsafe.Pointer(&x[0]))
		if at >= base && at < base+uintptr(len(params))*4 {
			off := int(at-base) / 4
			return s.w[off : off+n]
		}
	}
	buf := s.slot[slot]
	if n > len(buf) {
		// a weight outside Params (a frozen base under LoRA) can be wider
		// than any activation: grow once, then reuse
		buf = make([]E, n)
		s.slot[slot] = buf
	}
	s.round(buf[:n], x[:n])
	return buf[:n]
}
