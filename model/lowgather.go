package model

import "strings"

// What ZeRO-3 may gather in the compute precision. Under bf16 (or fp16)
// the large products read their weights from the rounded copy only: the
// blocks' four matrices, lm_head and the last stage's copy of the tied
// embedding. Their owners round their pieces and the gather moves the
// rounded values (half the bytes for bf16), and the float32 values never
// become resident. Everything else is read in float32 and gathered so:
// norms and biases, wpe, wte on the first stage (the embedding looks up
// float32 rows; a tied head on the same stage rounds its chunks locally),
// c_attn when tensor parallelism replicates kv heads (kvrep.go gathers
// its columns from the float32 weight).

// lowPrecisionOnly says parameter p is read only through the rounded copy.
func lowPrecisionOnly(p ParamShape, kvReplicated bool) bool {
	if p.TiedCopy || p.Name == "lm_head.weight" {
		return true
	}
	if !strings.HasPrefix(p.Name, "h.") {
		return false
	}
	switch {
	case strings.HasSuffix(p.Name, ".attn.c_attn.weight"):
		return !kvReplicated
	case strings.HasSuffix(p.Name, ".attn.c_proj.weight"), strings.HasSuffix(p.Name, ".mlp.c_fc.weight"), strings.HasSuffix(p.Name, ".mlp.c_proj.weight"):
		return true
	}
	return false
}

// LowPrecisionRanges lists the ranges [lo, hi) of the flat parameter
// buffer (parameters in layout order, as ParamShapes gives them, on a TP
// group of tpSize) whose parameters are read only through the rounded
// copy under bf16/fp16, merged where adjacent.
func LowPrecisionRanges(shapes []ParamShape, cfg Config, tpSize int) [][2]int {
	rep := kvReplicas(cfg, tpSize) > 1
	var out [][2]int
	off := 0
	for _, p := range shapes {
		n := p.Size()
		if lowPrecisionOnly(p, rep) {
			if k := len(out); k > 0 && out[k-1][1] == off {
				out[k-1][1] += n
			} else {
				out = append(out, [2]int{off, off + n})
			}
		}
		off += n
	}
	return out
}

// LowPrecisionRanges is LowPrecisionRanges of this model's parameters.
func (m *GPT) LowPrecisionRanges() [][2]int {
	return LowPrecisionRanges(m.Params.shapes(), m.Config, m.tp.Size())
}

// PrecisionCopy is the rounded copy of the parameters, laid out like
// Params.Data: bf16 bits, or fp16-rounded values held in float32 (the
// other nil; both nil in float32).
func (m *GPT) PrecisionCopy() (bf16 []uint16, fp16 []float32) {
	if m.b16.on {
		bf16 = m.b16.w
	}
	if m.f16.on {
		fp16 = m.f16.w
	}
	return bf16, fp16
}

// RoundRange rounds src[lo:hi] (float32 values of parameters [lo, hi) kept
// elsewhere: ZeRO-3's master pieces) into the copy, a no-op in float32.
func (m *GPT) RoundRange(src []float32, lo, hi int) {
	if m.b16.on {
		m.b16.round(m.b16.w[lo:hi], src[lo:hi])
	}
	if m.f16.on {
		m.f16.round(m.f16.w[lo:hi], src[lo:hi])
	}
}

// CopyBytes is the size of one element of the rounded copy: 2 (bf16), 4
// (fp16, held in float32) or 0.
func CopyBytes(p Precision) int {
	switch p {
	case BF16:
		return 2
	case FP16:
		return 4
	}
	return 0
}
