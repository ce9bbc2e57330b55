package model

// Acts holds the activations one Forward saves for its Backward, for a
// batch of up to the B x T it was made for. Shapes use N = B*T rows and this
// rank's local widths (see localDims).
type Acts struct {
	maxB, maxT int
	b, t       int // shape of the last Forward
	hasTargets bool
	// the model chunk these activations are for (Layout.Spans): its index,
	// its first block's local index (into the model's blocks), and whether
	// it embeds tokens (the first stage's first chunk) and has the head
	// (the last stage's last chunk)
	chunk, lo   int
	first, last bool

	tokens, targets []int32     // (N) copies of the last Forward's inputs
	input           []float32   // (N, C) embedding output, or the hidden state received from the previous stage (chunk)
	blocks          []blockActs // the chunk's blocks
	lnf             []float32   // (N, C) last stage only
	lnfMean         []float32   // (N)
	lnfRstd         []float32   // (N)
	logits          []float32   // (N, Vl) probabilities after a Forward with targets
	losses          []float32   // (N)
	seg             segState    // packed-sequence segments (segments.go); zero: one sequence per row
	head            headState   // loss weights and custom-head gradient (head.go); zero: the LM loss
	// recompute is the recomputation mode (recompute.go; "" none); under
	// RecomputeFull the blocks keep only res3 and run on work's buffers
	recompute string
	work      *blockActs
	// a split backward's queued weight gradients (splitbackward.go) and
	// the copies of their output gradients
	wq   []deferredW
	wbuf [][]float32
	wn   int // products queued (copies in use)
}

// blockActs are one block's saved activations.
type blockActs struct {
	ln1, ln1Mean, ln1Rstd []float32 // (N, C), (N), (N)
	qkv                   []float32 // (N, QKVl): [q | k | v] for this rank's heads
	att                   []float32 // (B, NHl, T) log-sum-exp of each query row (FlashAttention)
	atty                  []float32 // (N, Cl) attention output before the projection
	res2                  []float32 // (N, C) residual stream after attention
	ln2, ln2Mean, ln2Rstd []float32
	fch                   []float32 // (N, FCl) MLP pre-activation
	fchAct                []float32 // (N, Hl)
	res3                  []float32 // (N, C) block output

	lora [loraKinds][]float32 // (N, r) inp @ A per adapter (lora_model.go)
}

// NewActs allocates activations for batches of up to B x T on this rank
// (its first model chunk: the whole stage unless the layout has Chunks).
func (m *GPT) NewActs(B, T int) *Acts { return m.newActs(0, B, T, RecomputeNone) }

// Chunks is the number of model chunks this rank holds (Layout.Spans).
func (m *GPT) Chunks() int { return len(m.Layout.Spans()) }

// Chunk is the model chunk a's activations are for.
func (a *Acts) Chunk() int { return a.chunk }

// newActs allocates what recomputation mode keeps (see NewActsRecompute)
// for model chunk chunk, and nothing it would drop: a buffer allocated and
// dropped is garbage the next allocation to reuse zeroes into resident
// memory.
func (m *GPT) newActs(chunk, B, T int, mode string) *Acts {
	d, l := m.local, m.Layout
	N := B * T
	f := func(n int) []float32 { return make([]float32, n) }
	a := &Acts{maxB: B, maxT: T, tokens: make([]int32, N), targets: make([]int32, N), input: f(N * d.C)}
	spans := l.Spans()
	for _, s := range spans[:chunk] {
		a.lo += s.Hi - s.Lo
	}
	a.chunk, a.first, a.last = chunk, l.First && chunk == 0, l.Last && chunk == len(spans)-1
	// block is one block's buffers, with or without the output and the
	// MLP activation
	block := func(res3, fchAct bool) blockActs {
		b := blockActs{
			ln1: f(N * d.C), ln1Mean: f(N), ln1Rstd: f(N),
			qkv: f(N * d.QKVl), att: f(B * d.NHl * T), atty: f(N * d.Cl), res2: f(N * d.C),
			ln2: f(N * d.C), ln2Mean: f(N), ln2Rstd: f(N),
			fch: f(N * d.FCl),
		}
		if res3 {
			b.res3 = f(N * d.C)
		}
		if fchAct {
			b.fchAct = f(N * d.Hl)
		}
		return b
	}
	a.blocks = make([]blockActs, spans[chunk].Hi-spans[chunk].Lo)
	switch {
	case mode == RecomputeSelective:
		var shared []float32
		if len(a.blocks) > 0 {
			shared = f(N * d.Hl)
		}
		for i := range a.blocks {
			a.blocks[i] = block(true, false)
			a.blocks[i].fchAct = shared
		}
		a.recompute = mode
	case mode == RecomputeFull && len(a.blocks) > 0:
		for i := range a.blocks {
			a.blocks[i] = blockActs{res3: f(N * d.C)}
		}
		work := block(false, true) // every buffer but the output, shared
		a.work = &work
		a.recompute = mode
	default: // none, or full on a stage without blocks (nothing per block to keep)
		for i := range a.blocks {
			a.blocks[i] = block(true, true)
		}
	}
	if a.last {
		a.lnf, a.lnfMean, a.lnfRstd = f(N*d.C), f(N), f(N)
		a.logits, a.losses = f(N*d.Vl), f(N)
	}
	return a
}

// Bytes is the memory held by these activations.
func (a *Acts) Bytes() int64 {
	n := len(a.input) + len(a.lnf) + len(a.lnfMean) + len(a.lnfRstd) + len(a.logits) + len(a.losses) + len(a.tokens) + len(a.targets)
	count := func(b *blockActs, fchAct bool) {
		n += len(b.ln1) + len(b.ln1Mean) + len(b.ln1Rstd) + len(b.qkv) + len(b.att) + len(b.atty) + len(b.res2)
		n += len(b.ln2) + len(b.ln2Mean) + len(b.ln2Rstd) + len(b.fch) + len(b.res3)
		if fchAct {
			n += len(b.fchAct)
		}
	}
	for i := range a.blocks {
		// a selective recomputation's MLP activation is one shared buffer
		count(&a.blocks[i], a.recompute != RecomputeSelective || i == 0)
	}
	if a.work != nil {
		count(a.work, true)
		n -= len(a.work.res3) // a view of the recomputed block's output, counted with the block
	}
	for _, w := range a.wbuf { // a split backward's output-gradient copies (splitbackward.go)
		n += cap(w)
	}
	return int64(n) * 4
}

// Output is the hidden state (B*T, C) leaving this stage: what a non-last
// pipeline stage sends to the next one.
func (a *Acts) Output() []float32 {
	N := a.b * a.t
	if len(a.blocks) == 0 {
		return a.input[:N*len(a.input)/(a.maxB*a.maxT)]
	}
	return a.blocks[len(a.blocks)-1].res3[:N*len(a.input)/(a.maxB*a.maxT)]
}

// Logits are this rank's (B*T, Vl) logits after a Forward without targets
// (the full vocabulary when TP is 1).
func (a *Acts) Logits() []float32 {
	return a.logits[:a.b*a.t*len(a.logits)/(a.maxB*a.maxT)]
}

// Losses are the per-position losses (B*T) of the last Forward with targets.
func (a *Acts) Losses() []float32 { return a.losses[:a.b*a.t] }
