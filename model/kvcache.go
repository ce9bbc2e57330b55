package model

import (
	"context"
	"fmt"
	"math"
)

// KVCache runs a single sequence forward a few tokens at a time for
// generation, keeping every layer's keys and values of the positions seen so
// far, so each new token costs one row of work per layer instead of
// recomputing the whole prefix.
//
// Shapes, with L = Len() positions cached and Tn new tokens:
//
//	k[layer], v[layer]  (Cap, Ckv) rows 0..L-1 filled; RoPE already applied to k
//	                    (Ckv = KVHeads*HeadDim: only the kv heads are kept)
//	scratch rows        (Cap, ...) enough for a prompt of Cap tokens at once
//
// It needs the whole model in this process (TP = PP = 1). A KVCache belongs
// to one goroutine; the model's weights may be shared by several caches.
type KVCache struct {
	m     *GPT
	cap   int
	n     int
	k, v  [][]float32
	rope  *Rotary
	x     []float32 // (Cap, C) residual stream
	ln    []float32 // (Cap, C)
	mean  []float32 // (Cap)
	rstd  []float32 // (Cap)
	qkv   []float32 // (Cap, C+2Ckv)
	atty  []float32 // (Cap, C)
	res   []float32 // (Cap, C)
	fch   []float32 // (Cap, FC)
	act   []float32 // (Cap, H)
	score [][]float32
	lnf   []float32 // (C) last row after ln_f
	logit []float32 // (V)
	task  kvAttendTask
}

// NewKVCache makes an empty cache for up to capacity positions. A
// learned-position model cannot go past n_positions; RoPE and ALiBi models
// can (quality then depends on the encoding and its scaling).
func (m *GPT) NewKVCache(capacity int) (*KVCache, error) {
	l := m.Layout
	if m.tp.Size() != 1 || !l.First || !l.Last {
		return nil, fmt.Errorf("kv cache: generation needs the whole model in one process (tensor parallel %d, blocks %d..%d)", m.tp.Size(), l.FirstBlock, l.EndBlock)
	}
	if capacity <= 0 {
		return nil, fmt.Errorf("kv cache: capacity %d must be positive", capacity)
	}
	cfg := m.Config
	if w := cfg.SlidingWindow; w > 0 && capacity > w {
		return nil, fmt.Errorf("kv cache: %d positions exceed the sliding window of %d (sliding-window attention is not implemented: full causal attention equals it only up to the window)", capacity, w)
	}
	if cfg.Position == PosLearned && capacity > cfg.NPositions {
		return nil, fmt.Errorf("kv cache: %d positions exceed the %d trained positions of a learned-position model", capacity, cfg.NPositions)
	}
	d := m.local
	C := d.C
	f := func(n int) []float32 { return make([]float32, n) }
	c := &KVCache{m: m, cap: capacity,
		x: f(capacity * C), ln: f(capacity * C), mean: f(capacity), rstd: f(capacity),
		qkv: f(capacity * d.QKVl), atty: f(capacity * C), res: f(capacity * C),
		fch: f(capacity * d.FCl), act: f(capacity * d.Hl), lnf: f(C), logit: f(d.Vl)}
	for range cfg.NLayer {
		c.k = append(c.k, f(capacity*d.KVl))
		c.v = append(c.v, f(capacity*d.KVl))
	}
	for range m.attn.Threads {
		c.score = append(c.score, nil) // grown on demand: (Tn, L) per head
	}
	if cfg.Position == PosRoPE {
		var err error
		if c.rope, err = NewRotary(cfg, capacity); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Len is the number of cached positions; Cap the most it can hold.
func (c *KVCache) Len() int { return c.n }
func (c *KVCache) Cap() int { return c.cap }

// Reset empties the cache for a new sequence.
func (c *KVCache) Reset() { c.n = 0 }

// Forward appends tokens (positions Len()..Len()+len(tokens)-1) and returns
// the logits (V) that predict the token after the last of them. The slice
// is reused by the next call.
func (c *KVCache) Forward(ctx context.Context, tokens []int32) ([]float32, error) {
	m, d := c.m, c.m.local
	Tn, p0 := len(tokens), c.n
	if Tn == 0 {
		return nil, fmt.Errorf("kv cache: no tokens to append")
	}
	if p0+Tn > c.cap {
		if m.Config.Position == PosLearned && p0+Tn > m.Config.NPositions {
			return nil, fmt.Errorf("kv cache: %d positions exceed the %d trained positions of a learned-position model", p0+Tn, m.Config.NPositions)
		}
		return nil, fmt.Errorf("kv cache: %d cached + %d new positions exceed its capacity of %d", p0, Tn, c.cap)
	}
	V := int32(m.Config.VocabSize)
	for i, t := range tokens {
		if t < 0 || t >= V {
			return nil, fmt.Errorf("kv cache: token id %d at position %d is outside the vocabulary of %d", t, p0+i, V)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	C := d.C
	w := &m.w
	x := c.x[:Tn*C]
	for i, tok := range tokens {
		row := x[i*C : (i+1)*C]
		copy(row, w.wte[int(tok)*C:int(tok+1)*C])
		if w.wpe != nil {
			ResidualAdd(row, w.wpe[(p0+i)*C:(p0+i+1)*C])
		}
	}
	for l := range w.blocks {
		c.block(l, x, Tn, p0)
	}
	// Only the last row's logits are needed to pick the next token.
	last := x[(Tn-1)*C : Tn*C]
	m.norm(c.lnf, c.mean[:1], c.rstd[:1], last, w.lnfw, w.lnfb, 1)
	rowDots(c.logit, c.lnf, w.head)
	c.n += Tn
	return c.logit, nil
}

// block runs layer l on the Tn new rows of x (in place: x becomes the
// block's output), appending their keys and values to the cache.
func (c *KVCache) block(l int, x []float32, Tn, p0 int) {
	m, d := c.m, c.m.local
	bw := &m.w.blocks[l]
	C, N := d.C, Tn
	W, KV := d.QKVl, d.KVl
	ln, qkv := c.ln[:N*C], c.qkv[:N*W]
	m.norm(ln, c.mean[:N], c.rstd[:N], x, bw.ln1w, bw.ln1b, N)
	c.linear(qkv, ln, bw.attnW, bw.attnB, N, C, W)
	if c.rope != nil {
		c.rope.ForwardGQA(qkv, 1, N, C, d.NHl, d.NKVl, p0)
	}
	kc, vc := c.k[l], c.v[l]
	for i := 0; i < N; i++ {
		copy(kc[(p0+i)*KV:(p0+i+1)*KV], qkv[i*W+C:i*W+C+KV])
		copy(vc[(p0+i)*KV:(p0+i+1)*KV], qkv[i*W+C+KV:i*W+C+2*KV])
	}
	c.attend(qkv, kc, vc, N, p0)
	res := c.res[:N*C]
	c.linear(res, c.atty[:N*C], bw.projW, nil, N, C, C)
	m.addBiasResidual(res, bw.projB, x, N, C) // res = x + attn
	m.norm(ln, c.mean[:N], c.rstd[:N], res, bw.ln2w, bw.ln2b, N)
	fch, act := c.fch[:N*d.FCl], c.act[:N*d.Hl]
	c.linear(fch, ln, bw.fcW, bw.fcB, N, C, d.FCl)
	m.activate(act, fch, N, d.Hl)
	c.linear(x, act, bw.fcProjW, nil, N, d.Hl, C)
	m.addBiasResidual(x, bw.fcProjB, res, N, C) // x = res + mlp
}

// attend computes atty (N, C) for the N new queries against all p0+N cached
// keys: new row i sits at position p0+i and sees keys 0..p0+i. Heads are
// spread over the attention pool (kvAttendTask, reused: no allocation per
// token).
func (c *KVCache) attend(qkv, kc, vc []float32, N, p0 int) {
	m, d := c.m, c.m.local
	L := p0 + N
	for w := range c.score {
		if len(c.score[w]) < N*L {
			c.score[w] = make([]float32, N*L)
		}
	}
	t := &c.task
	*t = kvAttendTask{c: c, qkv: qkv, kc: kc, vc: vc, N: N, p0: p0}
	m.pool.p.run(t, d.NHl, m.attn.Threads)
	*t = kvAttendTask{} // drop references to the layer's buffers
}

// kvAttendTask is one attend call; run(w, h) computes head h on worker w.
type kvAttendTask struct {
	c           *KVCache
	qkv, kc, vc []float32
	N, p0       int
}

func (k *kvAttendTask) run(w, h int) {
	c, N, p0 := k.c, k.N, k.p0
	a, d := c.m.attn, c.m.local
	C, NH := d.C, d.NHl
	HS := C / NH
	KV, kv := d.KVl, h%d.NKVl // query head h reads kv head h % NKV (Config.KVGroup)
	L := p0 + N
	scale := float32(1 / math.Sqrt(float64(HS)))
	s := c.score[w][:N*L]
	// scores (N, L) = scale * q (N, HS) @ K^T
	a.gemm.Sgemm(false, true, N, L, HS, scale, k.qkv[h*HS:], d.QKVl, k.kc[kv*HS:], KV, 0, s, L)
	for i := 0; i < N; i++ {
		t := p0 + i
		row := s[i*L : (i+1)*L]
		if a.Slopes != nil {
			alibiBias(row[:t+1], a.Slopes[h], t)
		}
		mx := row[0]
		for _, v := range row[1 : t+1] {
			mx = max(mx, v)
		}
		var z float32
		for j := 0; j <= t; j++ {
			e := float32(math.Exp(float64(row[j] - mx)))
			row[j] = e
			z += e
		}
		inv := 1 / z
		for j := 0; j <= t; j++ {
			row[j] *= inv
		}
		clear(row[t+1:])
	}
	// out (N, HS) = att (N, L) @ V (L, HS)
	a.gemm.Sgemm(false, false, N, HS, L, 1, s, L, k.vc[kv*HS:], KV, 0, c.atty[h*HS:], C)
}

// linear is LinearForward, except that a single row (one new token) skips
// the GEMM engine: packing a whole weight matrix to multiply one row costs
// more than the product itself.
func (c *KVCache) linear(out, inp, w, b []float32, N, in, oc int) {
	if N != 1 {
		LinearForward(c.m.gemm, out, inp, w, b, N, in, oc)
		return
	}
	vecMat(out[:oc], inp[:in], w[:in*oc], b)
}

// vecMat: out (oc) = x (in) @ w (in, oc) [+ b], four rows of w at a time.
func vecMat(out, x, w, b []float32) {
	oc := len(out)
	if b != nil {
		copy(out, b[:oc])
	} else {
		clear(out)
	}
	k := 0
	for ; k+4 <= len(x); k += 4 {
		x0, x1, x2, x3 := x[k], x[k+1], x[k+2], x[k+3]
		w0, w1, w2, w3 := w[k*oc:(k+1)*oc], w[(k+1)*oc:(k+2)*oc], w[(k+2)*oc:(k+3)*oc], w[(k+3)*oc:(k+4)*oc]
		for j := range out {
			out[j] += x0*w0[j] + x1*w1[j] + x2*w2[j] + x3*w3[j]
		}
	}
	for ; k < len(x); k++ {
		xk, wk := x[k], w[k*oc:(k+1)*oc]
		for j := range out {
			out[j] += xk * wk[j]
		}
	}
}

// rowDots: out[v] = x . rows[v] for rows (len(out), len(x)) — the tied head
// on one row.
func rowDots(out, x, rows []float32) {
	n := len(x)
	for v := range out {
		r := rows[v*n : (v+1)*n]
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= n; i += 4 {
			s0 += x[i] * r[i]
			s1 += x[i+1] * r[i+1]
			s2 += x[i+2] * r[i+2]
			s3 += x[i+3] * r[i+3]
		}
		for ; i < n; i++ {
			s0 += x[i] * r[i]
		}
		out[v] = (s0 + s1) + (s2 + s3)
	}
}
