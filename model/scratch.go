package model

// ScratchBytes is the memory of the buffers the model keeps besides its
// parameters, gradients and activation slots (Acts): the backward scratch
// shared by every Acts (dres, dln, datty, dqkv, dfch, dfchAct, the
// LayerNorm statistics, the TP embedding output), FlashAttention's
// per-worker blocks, the vocabulary-parallel cross-entropy's row
// statistics, RoPE's tables and the replicated-kv-head buffers. It
// excludes the model's own default Acts (Forward/Backward's; see
// DefaultActsBytes) and the reduced-precision copies (PrecisionBytes).
// Memory planning (package memplan) predicts the same sum analytically.
func (m *GPT) ScratchBytes() int64 {
	n := len(m.dres) + len(m.dln) + len(m.datty) + len(m.dqkv) + len(m.dfch) + len(m.dfchAct) + len(m.lnStats) + len(m.embedOut)
	for _, s := range m.attn.scratch {
		n += len(s.s) + len(s.dp) + len(s.m) + len(s.l) + len(s.d)
	}
	if m.rope != nil {
		n += len(m.rope.cos) + len(m.rope.sin)
	}
	if x := m.kvrep; x != nil {
		n += len(x.dW) + len(x.dB) + len(x.dFull)
		for _, b := range m.w.blocks {
			n += len(b.repW) + len(b.repB)
		}
	}
	// tensor.NewVocabCrossEntropy(maxRows): rowMax and rowStats (float32,
	// 1 and 2 per row) and rowLoss (float64)
	rows := int64(m.MaxB) * int64(m.MaxT)
	return int64(n)*4 + rows*(3*4+8)
}

// PrecisionBytes is the memory of the reduced-precision products' state
// (SetBF16, SetFP16): the rounded copy of every parameter (2 bytes an
// element for bf16, 4 for fp16's float32-held values) and the two
// operand scratch slots. 0 in float32.
func (m *GPT) PrecisionBytes() int64 { return m.bf16Bytes() }

// PrecisionCopyBytes is the part of PrecisionBytes that is the rounded
// copy of the parameters (laid out like Params.Data; under ZeRO-3 only
// its gathered units are resident).
func (m *GPT) PrecisionCopyBytes() int64 {
	return int64(len(m.b16.w))*2 + int64(len(m.f16.w))*4
}

// DefaultActsBytes is the memory of the model's own activations, those
// Forward and Backward use (NewSharded allocates them for MaxB x MaxT
// without recomputation). A trainer runs on its own Acts and never touches
// these, so the operating system never maps them in: they cost address
// space, not resident memory.
func (m *GPT) DefaultActsBytes() int64 { return m.acts.Bytes() }
