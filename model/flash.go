package model

import (
	"math"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/vec"
)

// flashBlock is the side of the query and key blocks. A (128, 128) score
// block and its gradient (128 KiB) fit in L2 next to the q/k/v panels, and
// the per-block products are big enough for the GEMM micro-kernel to run
// near its peak: 64x64x64 products ran at ~145 GFLOP/s against ~170 for
// 128x128x64, and on gpt2s (T = 256) 128 took attention's share of a
// training step from 62 to 52 ms at 1 thread, net of the larger wasted
// half of the diagonal blocks. 256 was slower again (half of every block
// above the diagonal is masked).
const flashBlock = 128

// FlashAttention is causal multi-head self-attention computed block by
// block with an online softmax (FlashAttention, Dao et al. 2022): for each
// block of query rows it walks the key blocks, keeping per row the running
// maximum m and normalizer l, rescaling the partial output whenever m grows.
// No (T, T) probability matrix is ever stored; the forward saves one number
// per row, lse = m + log(l), from which the backward recomputes each
// probability block as exp(score - lse).
//
//	qkv  (B, T, C+2*Ckv): per row [q | k | v]; q is C = NH*HS wide, head h
//	     at h*HS; k and v are Ckv = NKV*HS wide, NKV = NH/Group
//	out  (B, T, C): heads concatenated
//	lse  (B, NH, T): log-sum-exp of each query row's scores
//
// With grouped-query attention (Group > 1) query head h reads kv head
// h % NKV (strand's stored head order, see Config.KVGroup).
//
// Each (b, h) pair is independent and writes only its own columns: pairs
// are spread over a persistent worker pool with a fixed assignment, so
// results never depend on scheduling and a call allocates nothing. The
// backward runs per (b, kv head), its query heads in order, since they all
// add to that kv head's gradients.
type FlashAttention struct {
	Threads int
	// Group is the number of query heads per kv head (0 or 1: multi-head).
	Group int
	// Slopes, when set, are ALiBi's per-head slopes (NH of this rank's
	// heads): score[t,j] gets -Slopes[h]*(t-j) before the softmax.
	Slopes []float32
	// SegStart, when set (B*T), is each query's first visible key within
	// its row, for packed sequences (see segments.go).
	SegStart []int32

	gemm    *gemm.Engine // single-threaded: parallelism is across heads
	pool    *poolHandle
	scratch []flashScratch // one per worker
	fwd     flashForward
	bwd     flashBackward
}

// flashScratch is one worker's buffers.
type flashScratch struct {
	s, dp []float32 // (flashBlock, flashBlock) scores/probabilities and their gradient
	m, l  []float32 // (flashBlock) running max and normalizer of the query block
	d     []float32 // (maxT) rowsum(dout * out), the softmax backward's correction
}

// NewFlashAttention prepares buffers for sequences of up to maxT positions.
func NewFlashAttention(threads, maxT int) *FlashAttention {
	threads = max(threads, 1)
	a := &FlashAttention{Threads: threads, gemm: gemm.New(1), pool: newPoolHandle()}
	for range threads {
		a.scratch = append(a.scratch, flashScratch{
			s: make([]float32, flashBlock*flashBlock), dp: make([]float32, flashBlock*flashBlock),
			m: make([]float32, flashBlock), l: make([]float32, flashBlock), d: make([]float32, maxT),
		})
	}
	a.fwd.a, a.bwd.a = a, a
	return a
}

// SetEngine makes per-block products use the kernel selection of e, kept
// single-threaded because heads already run in parallel.
func (a *FlashAttention) SetEngine(e *gemm.Engine) { a.gemm = e.WithThreads(1) }

// Forward computes out and lse from qkv.
func (a *FlashAttention) Forward(out, lse, qkv []float32, B, T, C, NH int) {
	a.fwd.shape = attShape{B: B, T: T, C: C, NH: NH}
	a.fwd.out, a.fwd.lse, a.fwd.qkv = out, lse, qkv
	a.pool.p.run(&a.fwd, B*NH, a.Threads)
	a.fwd.out, a.fwd.lse, a.fwd.qkv = nil, nil, nil
}

// Backward writes dqkv (B, T, 3C) from dout (B, T, C), given the qkv, out
// and lse of the matching Forward; dqkv is overwritten.
func (a *FlashAttention) Backward(dqkv, dout, qkv, out, lse []float32, B, T, C, NH int) {
	a.bwd.shape = attShape{B: B, T: T, C: C, NH: NH}
	a.bwd.dqkv, a.bwd.dout, a.bwd.qkv, a.bwd.out, a.bwd.lse = dqkv, dout, qkv, out, lse
	a.pool.p.run(&a.bwd, B*(NH/a.group()), a.Threads)
	a.bwd.dqkv, a.bwd.dout, a.bwd.qkv, a.bwd.out, a.bwd.lse = nil, nil, nil, nil, nil
}

type attShape struct{ B, T, C, NH int }

// group is the query heads per kv head.
func (a *FlashAttention) group() int { return max(a.Group, 1) }

// kvLayout gives, for q width C and NH heads, the head width, the number
// of kv heads, the row width of qkv and the offsets of k and v in a row.
func kvLayout(C, NH, group int) (HS, NKV, W, kOff, vOff int) {
	HS = C / NH
	NKV = NH / group
	return HS, NKV, C + 2*NKV*HS, C, C + NKV*HS
}

// keys is the visible key range [lo, t] of query t in row b.
func (a *FlashAttention) keys(b, t, T int) (lo, hi int) {
	if a.SegStart != nil {
		lo = int(a.SegStart[b*T+t])
	}
	return lo, t + 1
}

// firstKeyBlock is the first key block any query of [i0, i0+br) sees.
func (a *FlashAttention) firstKeyBlock(b, i0, br, T int) int {
	if a.SegStart == nil {
		return 0
	}
	lo := i0
	for r := 0; r < br; r++ {
		lo = min(lo, int(a.SegStart[b*T+i0+r]))
	}
	return lo / flashBlock * flashBlock
}

// flashForward is one Forward call, run per (b, h) by the pool.
type flashForward struct {
	a             *FlashAttention
	shape         attShape
	out, lse, qkv []float32
}

func (f *flashForward) run(w, bh int) {
	a, sh := f.a, f.shape
	T, C, NH := sh.T, sh.C, sh.NH
	b, h := bh/NH, bh%NH
	HS, NKV, C3, kOff, vOff := kvLayout(C, NH, a.group())
	kv := h % NKV
	scale := float32(1 / math.Sqrt(float64(HS)))
	base := b * T * C3
	q, k, v := f.qkv[base+h*HS:], f.qkv[base+kOff+kv*HS:], f.qkv[base+vOff+kv*HS:]
	o := f.out[b*T*C+h*HS:]
	lse := f.lse[bh*T : (bh+1)*T]
	sc := &a.scratch[w]
	var slope float32
	if a.Slopes != nil {
		slope = a.Slopes[h]
	}
	for i0 := 0; i0 < T; i0 += flashBlock {
		br := min(flashBlock, T-i0)
		m, l := sc.m[:br], sc.l[:br]
		for r := range br {
			m[r], l[r] = float32(math.Inf(-1)), 0
			clear(o[(i0+r)*C : (i0+r)*C+HS])
		}
		for j0 := a.firstKeyBlock(b, i0, br, T); j0 < i0+br; j0 += flashBlock {
			bc := min(flashBlock, i0+br-j0)
			s := sc.s
			// scores (br, bc) = scale * q_i (br, HS) @ k_j^T
			a.gemm.Sgemm(false, true, br, bc, HS, scale, q[i0*C3:], C3, k[j0*C3:], C3, 0, s, flashBlock)
			for r := range br {
				t := i0 + r
				row := s[r*flashBlock : r*flashBlock+bc]
				lo, hi := a.keys(b, t, T)
				jl, jh := max(lo-j0, 0), min(hi-j0, bc)
				if jl >= jh {
					clear(row) // nothing visible in this block
					continue
				}
				if slope != 0 {
					for j := jl; j < jh; j++ {
						row[j] -= slope * float32(t-j0-j)
					}
				}
				mx := vec.Max(row[jl:jh])
				mNew := max(m[r], mx)
				alpha := float32(math.Exp(float64(m[r] - mNew))) // 0 while m is -inf
				sum := vec.ExpShiftSum(row[jl:jh], mNew)
				clear(row[:jl])
				clear(row[jh:])
				l[r] = l[r]*alpha + sum
				m[r] = mNew
				if alpha != 1 {
					vec.Scale(o[t*C:t*C+HS], alpha)
				}
			}
			// o_i (br, HS) += p (br, bc) @ v_j (bc, HS)
			a.gemm.Sgemm(false, false, br, HS, bc, 1, s, flashBlock, v[j0*C3:], C3, 1, o[i0*C:], C)
		}
		for r := range br {
			vec.Scale(o[(i0+r)*C:(i0+r)*C+HS], 1/l[r])
			lse[i0+r] = m[r] + float32(math.Log(float64(l[r])))
		}
	}
}

// flashBackward is one Backward call, run per (b, h) by the pool.
type flashBackward struct {
	a                         *FlashAttention
	shape                     attShape
	dqkv, dout, qkv, out, lse []float32
}

// run computes the gradients of kv head (b, kv): it clears dk and dv,
// then adds the part of each of its query heads in order (one head with
// multi-head attention).
func (f *flashBackward) run(w, bkv int) {
	sh := f.shape
	NKV := sh.NH / f.a.group()
	b, kv := bkv/NKV, bkv%NKV
	HS, _, C3, kOff, vOff := kvLayout(sh.C, sh.NH, f.a.group())
	base := b * sh.T * C3
	dk, dv := f.dqkv[base+kOff+kv*HS:], f.dqkv[base+vOff+kv*HS:]
	for t := range sh.T {
		clear(dk[t*C3 : t*C3+HS])
		clear(dv[t*C3 : t*C3+HS])
	}
	for h := kv; h < sh.NH; h += NKV {
		f.head(w, b, h, kv)
	}
}

// head recomputes each probability block p = exp(score - lse) of query
// head h and applies the softmax backward ds = p * (dp - D), D[t] =
// dout[t] . out[t], which equals sum_j p[t,j]*dp[t,j] without needing a
// whole row of p; dq is written, dk and dv of kv head kv added to.
func (f *flashBackward) head(w, b, h, kv int) {
	a, sh := f.a, f.shape
	T, C, NH := sh.T, sh.C, sh.NH
	bh := b*NH + h
	HS, _, C3, kOff, vOff := kvLayout(C, NH, a.group())
	scale := float32(1 / math.Sqrt(float64(HS)))
	base := b * T * C3
	q, k, v := f.qkv[base+h*HS:], f.qkv[base+kOff+kv*HS:], f.qkv[base+vOff+kv*HS:]
	dq, dk, dv := f.dqkv[base+h*HS:], f.dqkv[base+kOff+kv*HS:], f.dqkv[base+vOff+kv*HS:]
	do, o := f.dout[b*T*C+h*HS:], f.out[b*T*C+h*HS:]
	lse := f.lse[bh*T : (bh+1)*T]
	sc := &a.scratch[w]
	var slope float32
	if a.Slopes != nil {
		slope = a.Slopes[h]
	}
	D := sc.d[:T]
	for t := range T {
		var dot float64
		orow, drow := o[t*C:t*C+HS], do[t*C:t*C+HS]
		for d := range orow {
			dot += float64(orow[d]) * float64(drow[d])
		}
		D[t] = float32(dot)
		clear(dq[t*C3 : t*C3+HS])
	}
	for i0 := 0; i0 < T; i0 += flashBlock {
		br := min(flashBlock, T-i0)
		for j0 := a.firstKeyBlock(b, i0, br, T); j0 < i0+br; j0 += flashBlock {
			bc := min(flashBlock, i0+br-j0)
			p, ds := sc.s, sc.dp
			a.gemm.Sgemm(false, true, br, bc, HS, scale, q[i0*C3:], C3, k[j0*C3:], C3, 0, p, flashBlock)
			for r := range br {
				t := i0 + r
				row := p[r*flashBlock : r*flashBlock+bc]
				lo, hi := a.keys(b, t, T)
				jl, jh := max(lo-j0, 0), min(hi-j0, bc)
				if jl >= jh {
					clear(row)
					continue
				}
				if slope != 0 {
					for j := jl; j < jh; j++ {
						row[j] -= slope * float32(t-j0-j)
					}
				}
				vec.ExpShiftSum(row[jl:jh], lse[t])
				clear(row[:jl])
				clear(row[jh:])
			}
			// dp (br, bc) = dout_i (br, HS) @ v_j^T ; dv_j += p^T @ dout_i
			a.gemm.Sgemm(false, true, br, bc, HS, 1, do[i0*C:], C, v[j0*C3:], C3, 0, ds, flashBlock)
			a.gemm.Sgemm(true, false, bc, HS, br, 1, p, flashBlock, do[i0*C:], C, 1, dv[j0*C3:], C3)
			for r := range br {
				pr, dr := p[r*flashBlock:r*flashBlock+bc], ds[r*flashBlock:r*flashBlock+bc]
				vec.SubMul(dr, pr, D[i0+r])
			}
			// dq_i += scale * ds @ k_j ; dk_j += scale * ds^T @ q_i
			a.gemm.Sgemm(false, false, br, HS, bc, scale, ds, flashBlock, k[j0*C3:], C3, 1, dq[i0*C3:], C3)
			a.gemm.Sgemm(true, false, bc, HS, br, scale, ds, flashBlock, q[i0*C3:], C3, 1, dk[j0*C3:], C3)
		}
	}
}

// parallel runs f(worker, i) for i in [0, n) on the layer's pool, for
// callers outside the training step (the KV cache) where a closure per call
// is cheap next to the work.
func (a *FlashAttention) parallel(n int, f func(worker, i int)) {
	a.pool.p.run(funcTask(f), n, a.Threads)
}

// funcTask adapts a function to headTask.
type funcTask func(worker, i int)

func (f funcTask) run(worker, i int) { f(worker, i) }
