package model

import (
	"math"
	"sync"

	"github.com/strand-ml/strand/gemm"
)

// ReferenceAttention is causal multi-head self-attention over a packed qkv
// tensor, computed the plain way with the whole (T, T) probability matrix
// kept: the readable reference that tests hold FlashAttention (and the KV
// cache) against. The model itself runs FlashAttention.
//
//	qkv  (B, T, C+2*Ckv): per row [q | k | v]; q is C = NH*HS wide, head h
//	     at h*HS; k and v are Ckv = NKV*HS wide, NKV = NH/Group, and query
//	     head h reads kv head h % NKV (see Config.KVGroup)
//	att  (B, NH, T, T): softmax probabilities (row t attends to 0..t)
//	out  (B, T, C): heads concatenated
//
// Each (b, h) pair is independent: they are spread over up to Threads
// goroutines, each writing its own slices, so results never depend on
// scheduling.
type ReferenceAttention struct {
	Threads int
	// Group is the number of query heads per kv head (0 or 1: multi-head).
	Group int
	// Slopes, when set, are ALiBi's per-head slopes (NH of this rank's
	// heads): score[t,j] gets -Slopes[h]*(t-j) before the softmax. The
	// bias is a constant, so Backward needs no change for it.
	Slopes  []float32
	gemm    *gemm.Engine // single-threaded engine: parallelism is across heads
	scratch [][]float32  // per-worker (T, T) buffer for backward

	// SegStart, when set (B*T), is each query's first visible key within
	// its row: packed sequences attend only inside their own segment
	// (see segments.go). Probabilities before it are zero, so Backward
	// needs no change for it either.
	SegStart []int32
}

// NewReferenceAttention prepares buffers for sequences of up to maxT positions.
func NewReferenceAttention(threads, maxT int) *ReferenceAttention {
	if threads < 1 {
		threads = 1
	}
	a := &ReferenceAttention{Threads: threads, gemm: gemm.New(1)}
	for i := 0; i < threads; i++ {
		a.scratch = append(a.scratch, make([]float32, maxT*maxT))
	}
	return a
}

// SetEngine makes per-head products use kernel selection of e, kept
// single-threaded because heads already run in parallel.
func (a *ReferenceAttention) SetEngine(e *gemm.Engine) { a.gemm = e.WithThreads(1) }

// parallel runs f(worker, i) for i in [0, n) over a.Threads goroutines.
func (a *ReferenceAttention) parallel(n int, f func(worker, i int)) {
	workers := min(a.Threads, n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(0, i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				f(w, i)
			}
		}()
	}
	wg.Wait()
}

// Forward computes out and att from qkv.
func (a *ReferenceAttention) Forward(out, att, qkv []float32, B, T, C, NH int) {
	HS, NKV, C3, kOff, vOff := kvLayout(C, NH, max(a.Group, 1))
	scale := float32(1 / math.Sqrt(float64(HS)))
	a.parallel(B*NH, func(_, bh int) {
		b, h := bh/NH, bh%NH
		base := b * T * C3
		kv := h % NKV
		q := qkv[base+h*HS:]
		k := qkv[base+kOff+kv*HS:]
		v := qkv[base+vOff+kv*HS:]
		s := att[bh*T*T : (bh+1)*T*T]
		// scores (T, T) = scale * q (T, HS) @ k^T
		a.gemm.Sgemm(false, true, T, T, HS, scale, q, C3, k, C3, 0, s, T)
		for t := 0; t < T; t++ {
			row := s[t*T : (t+1)*T]
			if a.Slopes != nil {
				alibiBias(row[:t+1], a.Slopes[h], t)
			}
			lo := 0
			if a.SegStart != nil {
				lo = int(a.SegStart[b*T+t])
				clear(row[:lo])
			}
			mx := row[lo]
			for _, x := range row[lo+1 : t+1] {
				if x > mx {
					mx = x
				}
			}
			var z float32
			for j := lo; j <= t; j++ {
				e := float32(math.Exp(float64(row[j] - mx)))
				row[j] = e
				z += e
			}
			inv := 1 / z
			for j := lo; j <= t; j++ {
				row[j] *= inv
			}
			clear(row[t+1:])
		}
		// out (T, HS) = att (T, T) @ v (T, HS)
		a.gemm.Sgemm(false, false, T, HS, T, 1, s, T, v, C3, 0, out[b*T*C+h*HS:], C)
	})
}

// Backward writes dqkv (B, T, C+2*Ckv) from dout (B, T, C); dqkv is
// overwritten. Work is spread per (b, kv head), its query heads in order:
// the first writes dk and dv, the others add to them.
func (a *ReferenceAttention) Backward(dqkv, dout, qkv, att []float32, B, T, C, NH int) {
	HS, NKV, C3, kOff, vOff := kvLayout(C, NH, max(a.Group, 1))
	scale := float32(1 / math.Sqrt(float64(HS)))
	a.parallel(B*NKV, func(w, bkv int) {
		b, kv := bkv/NKV, bkv%NKV
		for h := kv; h < NH; h += NKV {
			a.backwardHead(w, b, h, kv, dqkv, dout, qkv, att, T, C, NH, HS, C3, kOff, vOff, scale)
		}
	})
}

func (a *ReferenceAttention) backwardHead(w, b, h, kv int, dqkv, dout, qkv, att []float32, T, C, NH, HS, C3, kOff, vOff int, scale float32) {
	{
		bh := b*NH + h
		var kvBeta float32 // the first query head of the kv head writes, the others add
		if h >= NH/max(a.Group, 1) {
			kvBeta = 1
		}
		base := b * T * C3
		q, k, v := qkv[base+h*HS:], qkv[base+kOff+kv*HS:], qkv[base+vOff+kv*HS:]
		dq, dk, dv := dqkv[base+h*HS:], dqkv[base+kOff+kv*HS:], dqkv[base+vOff+kv*HS:]
		do := dout[b*T*C+h*HS:]
		s := att[bh*T*T : (bh+1)*T*T]
		ds := a.scratch[w][:T*T]
		// datt (T, T) = dout (T, HS) @ v^T ; dv (T, HS) = att^T @ dout
		a.gemm.Sgemm(false, true, T, T, HS, 1, do, C, v, C3, 0, ds, T)
		a.gemm.Sgemm(true, false, T, HS, T, 1, s, T, do, C, kvBeta, dv, C3)
		// softmax backward: dpre[t,j] = att[t,j] * (datt[t,j] - sum_i att[t,i]*datt[t,i])
		for t := 0; t < T; t++ {
			p := s[t*T : (t+1)*T]
			d := ds[t*T : (t+1)*T]
			var dot float32
			for j := 0; j <= t; j++ {
				dot += p[j] * d[j]
			}
			for j := 0; j <= t; j++ {
				d[j] = p[j] * (d[j] - dot)
			}
			clear(d[t+1:])
		}
		// dq = scale * dpre @ k ; dk = scale * dpre^T @ q
		a.gemm.Sgemm(false, false, T, HS, T, scale, ds, T, k, C3, 0, dq, C3)
		a.gemm.Sgemm(true, false, T, HS, T, scale, ds, T, q, C3, kvBeta, dk, C3)
	}
}

// alibiBias adds -slope*(t-j) to row[j] for a query at position t.
func alibiBias(row []float32, slope float32, t int) {
	for j := range row {
		row[j] -= slope * float32(t-j)
	}
}
