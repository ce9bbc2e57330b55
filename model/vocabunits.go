package model

import (
	"context"
	"fmt"
	"slices"
)

// The vocabulary-sized weights under a residency (ZeRO-2/3). wte, its
// tied copy and lm_head are cut into row chunks (VocabCuts), one unit
// each, so a rank holds at most one chunk of them at a time (plus a
// prefetch):
//
//	embedding forward   each wte chunk gathered in turn; the rows of the
//	                    batch's tokens in it copied out
//	head forward        logits[:, chunk] = lnf @ W[chunk]^T, chunk by chunk
//	head backward       dlnf += dlogits[:, chunk] @ W[chunk] (beta 1 after
//	                    the first: the unsplit product's bits, VocabCuts);
//	                    dW[chunk] = dlogits[:, chunk]^T @ lnf, reduced
//	                    when the chunk is done
//	embedding backward  no wte gradient is held: the gradient rows of the
//	                    batch's tokens go to the residency (RowAdder)
//
// On one stage with a tied head the head's gradient of those rows is taken
// out of each chunk before it is reduced and the embedding's added to it
// (vocabRows), so each row's local gradient is summed over the ranks once,
// as data parallelism sums it: on two ranks the bits are DDP's.

// RowAdder takes the token embedding's gradient as rows: ids (local
// vocabulary rows, ascending) and rows (len(ids) x width), this rank's
// contribution to the wte chunks units. Every rank of the data-parallel
// group calls it together with at most capacity rows. A Residency that
// shards gradients implements it.
type RowAdder interface {
	AddRows(ctx context.Context, units []int, ids []int32, rows []float32, width, capacity int) error
}

// vocabRows is one backward's token-embedding gradient rows: the distinct
// local vocabulary rows of the batch's tokens and their gradient.
type vocabRows struct {
	at   []int32   // per position: its row's index in ids, -1 when not held here
	ids  []int32   // distinct local rows, ascending
	vals []float32 // (len(ids), C)
}

// collect fills ids and at from a batch's tokens (local rows [V0, V0+Vl)).
func (r *vocabRows) collect(tokens []int32, V0, Vl, C int) {
	r.ids = r.ids[:0]
	for _, t := range tokens {
		if v := int(t) - V0; v >= 0 && v < Vl {
			r.ids = append(r.ids, int32(v))
		}
	}
	slices.Sort(r.ids)
	r.ids = slices.Compact(r.ids)
	for n, t := range tokens {
		r.at[n] = -1
		if v := int(t) - V0; v >= 0 && v < Vl {
			i, _ := slices.BinarySearch(r.ids, int32(v))
			r.at[n] = int32(i)
		}
	}
	clear(r.vals[:len(r.ids)*C])
}

// take moves the gradient rows of ids in [r0, r1) out of the chunk's
// gradient g (rows r0.., C wide) into vals, leaving zeros.
func (r *vocabRows) take(g []float32, r0, r1, C int) {
	lo, _ := slices.BinarySearch(r.ids, int32(r0))
	for i := lo; i < len(r.ids) && int(r.ids[i]) < r1; i++ {
		row := g[(int(r.ids[i])-r0)*C : (int(r.ids[i])-r0+1)*C]
		copy(r.vals[i*C:(i+1)*C], row)
		clear(row)
	}
}

// chunked says the vocabulary weights are cut into units (a residency is
// installed).
func (m *GPT) chunked() bool { return m.residency != nil }

// embedChunked writes wte[token] (+ wpe) into x (N, C) one gathered chunk
// at a time; tokens outside this TP rank's vocabulary give zero rows
// before the TP all-reduce. pos is each position's index into wpe.
func (m *GPT) embedChunked(ctx context.Context, x []float32, tokens []int32, pos func(n int) int, N int) error {
	d, w, ix := m.local, &m.w, &m.units
	C := d.C
	for n, t := range tokens[:N] {
		if v := int(t) - d.V0; v < 0 || v >= d.Vl {
			clear(x[n*C : (n+1)*C])
		}
	}
	for k, u := range ix.wte {
		if err := m.need(ctx, u, false); err != nil {
			return err
		}
		r0, r1 := ix.wteCuts[k], ix.wteCuts[k+1]
		for n, t := range tokens[:N] {
			if v := int(t) - d.V0; v >= r0 && v < r1 {
				copy(x[n*C:(n+1)*C], w.wte[v*C:(v+1)*C])
			}
		}
		if err := m.done(ctx, u, false); err != nil {
			return err
		}
	}
	if m.tp.Size() > 1 {
		if err := m.tp.AllReduceSum(ctx, x[:N*C]); err != nil {
			return fmt.Errorf("embedding all-reduce: %w", err)
		}
	}
	if w.wpe == nil {
		return nil
	}
	if err := m.need(ctx, ix.wpe, false); err != nil {
		return err
	}
	for n := 0; n < N; n++ {
		p := pos(n)
		ResidualAdd(x[n*C:(n+1)*C], w.wpe[p*C:(p+1)*C])
	}
	return m.done(ctx, ix.wpe, false)
}

// logitsChunked computes logits (N, Vl) = lnf @ W^T one chunk of the head
// weight at a time (each output column's bits do not depend on the
// others computed with it).
func (m *GPT) logitsChunked(ctx context.Context, logits, lnf []float32, N int) error {
	d, w, ix := m.local, &m.w, &m.units
	C := d.C
	for k, u := range ix.headW {
		if err := m.need(ctx, u, false); err != nil {
			return err
		}
		r0, r1 := ix.headCuts[k], ix.headCuts[k+1]
		m.mm(false, true, N, r1-r0, C, 1, lnf, C, w.head[r0*C:r1*C], C, 0, logits[r0:], d.Vl)
		if err := m.done(ctx, u, false); err != nil {
			return err
		}
	}
	return nil
}

// headBackwardChunked computes dlnf (N, C) = dlogits @ W and dW =
// dlogits^T @ lnf one chunk of the head weight at a time; each chunk's
// gradient is complete when the chunk is done. On one stage with a tied
// head the gradient rows of this batch's tokens are moved into m.rows
// first (the embedding's backward adds to them).
func (m *GPT) headBackwardChunked(ctx context.Context, a *Acts, dlogits, dlnf []float32, N int) error {
	d, w, ix := m.local, &m.w, &m.units
	C := d.C
	// every chunk of dW is written whole (beta 0): a stale gradient needs
	// no clearing (which would also bring back its handed-back pages)
	m.Params.claim(w.dhead)
	for k, u := range ix.headW {
		if err := m.need(ctx, u, true); err != nil {
			return err
		}
		r0, r1 := ix.headCuts[k], ix.headCuts[k+1]
		beta := float32(1)
		if k == 0 {
			beta = 0
		}
		dx := mmArgs{false, false, N, C, r1 - r0, 1, dlogits[r0:], d.Vl, w.head[r0*C : r1*C], C, beta, dlnf, C}
		if w.dhead == nil { // frozen (LoRA)
			m.mm(dx.transA, dx.transB, dx.M, dx.N, dx.K, dx.alpha, dx.a, dx.lda, dx.b, dx.ldb, dx.beta, dx.c, dx.ldc)
		} else {
			dW := w.dhead[r0*C : r1*C]
			m.mmPair(dx, mmArgs{true, false, r1 - r0, C, N, 1, dlogits[r0:], d.Vl, a.lnf, C, 0, dW, C})
			if ix.tiedHere {
				m.rows.take(dW, r0, r1, C)
			}
		}
		if err := m.done(ctx, u, true); err != nil {
			return err
		}
	}
	return nil
}

// embedBackwardChunked hands the token embedding's gradient rows to the
// residency (on top of the head's, when tied here) and accumulates wpe's.
func (m *GPT) embedBackwardChunked(ctx context.Context, a *Acts, dres []float32, N, T int) error {
	d, w, ix, r := m.local, &m.w, &m.units, &m.rows
	C := d.C
	for n := 0; n < N; n++ {
		if i := r.at[n]; i >= 0 {
			ResidualAdd(r.vals[int(i)*C:(int(i)+1)*C], dres[n*C:(n+1)*C])
		}
	}
	if w.dwpe != nil {
		if err := m.need(ctx, ix.wpe, true); err != nil {
			return err
		}
		m.clearIfStale(w.dwpe)
		for n := 0; n < N; n++ {
			p := n % T
			if a.seg.ids != nil {
				p = int(a.seg.pos[n])
			}
			ResidualAdd(w.dwpe[p*C:(p+1)*C], dres[n*C:(n+1)*C])
		}
		if err := m.done(ctx, ix.wpe, true); err != nil {
			return err
		}
	}
	ra, ok := m.residency.(RowAdder)
	if !ok {
		return fmt.Errorf("model: the residency cannot take the embedding's gradient rows")
	}
	if err := ra.AddRows(ctx, ix.wte, r.ids, r.vals[:len(r.ids)*C], C, len(r.at)); err != nil {
		return fmt.Errorf("embedding gradient rows: %w", err)
	}
	return nil
}
