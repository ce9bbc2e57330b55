package model

import (
	"context"
	"fmt"
)

// Packed sequences. Fine-tuning packs several short examples into one row
// of T positions; attention must not cross from one example into another,
// and learned positions must restart at each example. A row's segment ids
// (one per position, non-decreasing runs: 0 0 0 1 1 2 2 2 ...) describe the
// packing. With segments set:
//
//   - a query at position t attends to keys j <= t of its own segment only
//     (Attention.SegStart gives each row's first key);
//   - the learned position embedding (wpe) uses the position within the
//     segment. RoPE and ALiBi depend only on t-j, so they need no change.
//
// Without segments (the default) every row is one sequence, as before.

// segState is an Acts' packing for its next Forward.
type segState struct {
	ids   []int32 // (N) segment id per position, as set; nil: one sequence per row
	start []int32 // (N) index within its row of the segment's first position
	pos   []int32 // (N) position within the segment
}

// SetSegments sets the segment id of every position (B*T, row-major) for
// the following ForwardActs calls on a, or clears them with nil. Segments
// are contiguous runs; an id that reappears after another is a new segment.
func (a *Acts) SetSegments(ids []int32) {
	if ids == nil {
		a.seg.ids = nil
		return
	}
	a.seg.ids = append(a.seg.ids[:0], ids...)
}

// prepare derives start and pos for a B x T batch.
func (s *segState) prepare(B, T int) error {
	if s.ids == nil {
		return nil
	}
	if len(s.ids) != B*T {
		return fmt.Errorf("model: %d segment ids for a %dx%d batch", len(s.ids), B, T)
	}
	if cap(s.start) < B*T {
		s.start, s.pos = make([]int32, B*T), make([]int32, B*T)
	}
	s.start, s.pos = s.start[:B*T], s.pos[:B*T]
	for b := 0; b < B; b++ {
		first := 0
		for t := 0; t < T; t++ {
			n := b*T + t
			if t > 0 && s.ids[n] != s.ids[n-1] {
				first = t
			}
			s.start[n], s.pos[n] = int32(first), int32(t-first)
		}
	}
	return nil
}

// segStart is the per-position first key for attention, nil when unpacked.
func (s *segState) segStart() []int32 {
	if s.ids == nil {
		return nil
	}
	return s.start
}

// embedSegmented is embed with learned positions restarting per segment.
func (m *GPT) embedSegmented(ctx context.Context, x []float32, tokens, pos []int32, B, T int) error {
	d, w := m.local, &m.w
	C := d.C
	N := B * T
	for n := 0; n < N; n++ {
		row := x[n*C : (n+1)*C]
		if v := int(tokens[n]) - d.V0; v >= 0 && v < d.Vl {
			copy(row, w.wte[v*C:(v+1)*C])
		} else {
			clear(row)
		}
	}
	if m.tp.Size() > 1 {
		if err := m.tp.AllReduceSum(ctx, x[:N*C]); err != nil {
			return fmt.Errorf("embedding all-reduce: %w", err)
		}
	}
	if w.wpe != nil {
		for n := 0; n < N; n++ {
			p := int(pos[n])
			ResidualAdd(x[n*C:(n+1)*C], w.wpe[p*C:(p+1)*C])
		}
	}
	return nil
}

// embedBackwardSegmented accumulates the embedding gradients of a packed
// batch: each rank adds the wte rows it holds, wpe rows by segment position.
func (m *GPT) embedBackwardSegmented(dres []float32, tokens, pos []int32, B, T int) {
	d, w := m.local, &m.w
	C := d.C
	for n := 0; n < B*T; n++ {
		g := dres[n*C : (n+1)*C]
		if v := int(tokens[n]) - d.V0; v >= 0 && v < d.Vl {
			ResidualAdd(w.dwte[v*C:(v+1)*C], g)
		}
		if w.dwpe != nil {
			p := int(pos[n])
			ResidualAdd(w.dwpe[p*C:(p+1)*C], g)
		}
	}
}
