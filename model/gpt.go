package model

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/parallel/tensor"
)

// GPT is a decoder-only transformer, or one rank's part of it (see Layout).
// It holds parameters and scratch buffers; the activations of each batch
// live in an Acts, so a pipeline stage can keep several micro-batches in
// flight.
type GPT struct {
	Config Config
	Layout Layout
	Params *Params
	MaxB   int
	MaxT   int

	// GradReady, when set, is called during Backward each time a prefix of
	// Params.Grad becomes final: GradReady(n) means Grad[:n] will not change
	// again in this Backward. Data-parallel training starts all-reducing
	// buckets from it while backward continues.
	GradReady func(n int)
	// deferTo is the Acts of the split backward running (BackwardInputActs),
	// which queues the blocks' weight gradients; nil otherwise
	deferTo *Acts
	// TiedOffset is where wte's gradient starts in Params.Grad on a stage
	// that holds wte (its tail), or len(Params.Grad) on others.
	TiedOffset int
	// LoRA, when enabled (EnableLoRA), holds the adapters' config and the
	// frozen base weights; Params are then the adapters.
	LoRA *LoRA

	gemm  *gemm.Engine
	pool  *poolHandle // the compute goroutines every split layer and attention run on (pool.go)
	attn  *FlashAttention
	rope  *Rotary // RoPE tables for positions [0, MaxT), nil unless Position is rope
	tp    tensor.Group
	ce    *tensor.VocabCrossEntropy
	w     weights
	local localDims
	acts  *Acts     // default activations used by Forward/Backward
	b16   bf16State // bf16 products (bf16.go); zero: float32
	f16   fp16State // fp16-rounded products (fp16.go); zero: float32
	// backward scratch shared by every Acts (one backward runs at a time)
	dres, dln, datty, dqkv, dfch, dfchAct, embedOut []float32
	split                                           splitOps  // the split layer calls' tasks (split.go)
	sumSq                                           sumSqTask // Params.NormSumSquares over the goroutines
	pair                                            pairTask  // a linear backward's two products at once (pair.go)
	lnStats                                         []float32 // LayerNorm backward's per-row statistics (split.go)
	splitMin                                        int       // tests: if > 0, the fewest units per goroutine of a split layer
	lanes                                           lanes     // the blocks' forward over batch rows (lanes.go)
	kvrep                                           *kvRep    // kv heads replicated over TP ranks (kvrep.go); nil otherwise
	residency                                       Residency // sharded parameters (ZeRO-2/3, residency.go); nil: all resident
	units                                           unitIndex // the units Residency is asked for
	rows                                            vocabRows // a backward's token-embedding gradient rows under a residency (vocabunits.go)
	held                                            bool      // a block's parts are needed together (holdParts)
	unitMin                                         int       // fewest parameters of a block's residency unit (SetUnitMin; 0: DefaultUnitMin)
	unitLo, unitHi                                  []int     // each unit's trainable range (clearing stale gradients)
	pagedCopies                                     bool      // the bf16/fp16 copy lives in discardable pages (PageLowPrecision)
}

// localDims are the widths of this rank's shards.
type localDims struct {
	C    int // model width (replicated)
	Cl   int // attention (query) width held here: NH/TP heads
	NHl  int
	NKVl int // kv heads held here: NKV/TP
	KVl  int // key (and value) width held here: NKVl*HS
	QKVl int // fused q|k|v width held here: Cl + 2*KVl
	Hl   int // MLP hidden width held here
	FCl  int // c_fc output columns held here (Hl, or 2*Hl for SwiGLU)
	Vl   int // vocabulary rows of wte held here
	V0   int // first vocabulary id held here
}

// blockWeights are one transformer block's parameter views.
type blockWeights struct {
	ln1w, ln1b, attnW, attnB, projW, projB []float32
	ln2w, ln2b, fcW, fcB, fcProjW, fcProjB []float32
	// gradients, same order
	dln1w, dln1b, dattnW, dattnB, dprojW, dprojB []float32
	dln2w, dln2b, dfcW, dfcB, dfcProjW, dfcProjB []float32
	readyAfter                                   int    // Grad[:readyAfter] final once this block's backward ends
	parts                                        [4]int // its units under a residency (BlockParts order)

	lora *loraBlock // adapters (lora_model.go); nil without LoRA
	// with kv heads replicated over TP ranks (kvrep.go): this rank's
	// columns of c_attn (C, QKVl) and of its bias, gathered each forward
	repW, repB []float32
}

type weights struct {
	wte, wpe, lnfw, lnfb     []float32
	dwte, dwpe, dlnfw, dlnfb []float32
	head, dhead              []float32      // the LM head (Vl, C): wte (tied) or lm_head.weight
	blocks                   []blockWeights // indexed by local block (Layout.blockIDs)
	headReady                int            // Grad prefix final after the head and ln_f
}

// New builds a single-process model for cfg with activations for batches up
// to maxB x maxT, running GEMMs on e. Parameters are zero until Init or a
// checkpoint load.
func New(cfg Config, maxB, maxT int, e *gemm.Engine) (*GPT, error) {
	return NewSharded(cfg, Full(cfg), maxB, maxT, e)
}

// NewSharded builds this rank's part of the model for layout l.
func NewSharded(cfg Config, l Layout, maxB, maxT int, e *gemm.Engine) (*GPT, error) {
	return NewShardedIn(cfg, l, maxB, maxT, e, nil)
}

// Alloc allocates a flat parameter or gradient buffer of n values.
type Alloc func(n int) ([]float32, error)

// NewShardedIn is NewSharded with the flat parameter and gradient buffers
// from alloc (nil: ordinary memory). ZeRO-2/3 pass memory whose pages can
// be handed back (internal/pages): the model's buffers then never exist
// in the Go heap, where the runtime may zero (and so make resident) what
// is never used.
func NewShardedIn(cfg Config, l Layout, maxB, maxT int, e *gemm.Engine, alloc Alloc) (*GPT, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if l.TP == nil {
		l.TP = tensor.Solo{}
	}
	if err := l.validate(cfg); err != nil {
		return nil, fmt.Errorf("model layout: %w", err)
	}
	if maxB <= 0 || maxT <= 0 {
		return nil, fmt.Errorf("model: batch %d and sequence length %d must be positive", maxB, maxT)
	}
	if w := cfg.SlidingWindow; w > 0 && maxT > w {
		return nil, fmt.Errorf("model: sequence length %d exceeds the sliding window of %d positions (sliding-window attention is not implemented: full causal attention equals it only up to the window)", maxT, w)
	}
	if cfg.Position == PosLearned && maxT > cfg.NPositions {
		return nil, fmt.Errorf("model: sequence length %d exceeds the %d positions of a learned-position model", maxT, cfg.NPositions)
	}
	tp := l.TP
	ps, err := buildParamsIn(paramSpecs(cfg, l), tp.Rank(), tp.Size(), alloc)
	if err != nil {
		return nil, err
	}
	ps.partial = !(l.First && l.Last)
	m := &GPT{Config: cfg, Layout: l, Params: ps, MaxB: maxB, MaxT: maxT, gemm: e, tp: tp}
	n := tp.Size()
	m.local = localDims{C: cfg.NEmbd, Cl: cfg.NEmbd / n, NHl: cfg.NHead / n, NKVl: max(1, cfg.KVHeads()/n), Hl: cfg.Hidden() / n, Vl: cfg.VocabSize / n, V0: tp.Rank() * (cfg.VocabSize / n)}
	m.local.KVl = m.local.NKVl * cfg.HeadDim()
	m.local.QKVl = m.local.Cl + 2*m.local.KVl
	m.local.FCl = m.local.Hl
	if cfg.Activation == SwiGLU {
		m.local.FCl = 2 * m.local.Hl
	}
	m.pool = newPoolHandle()
	m.attn = NewFlashAttention(e.Threads(), maxT)
	m.attn.pool = m.pool // attention's heads run on the model's goroutines
	m.attn.Group = m.local.NHl / m.local.NKVl
	m.attn.SetEngine(e)
	ps.clearer = m
	switch cfg.Position {
	case PosRoPE:
		if m.rope, err = NewRotary(cfg, maxT); err != nil {
			return nil, err
		}
	case PosALiBi:
		m.attn.Slopes = alibiSlopes(cfg.NHead, cfg.KVHeads(), tp.Rank(), m.local.NHl)
	}
	m.ce = tensor.NewVocabCrossEntropy(tp, m.local.V0, maxB*maxT)
	m.ce.Split = m
	m.bindWeights()
	N, d := maxB*maxT, m.local
	m.kvrep = newKVRep(cfg, m.local, tp, m.w.blocks)
	f := func(n int) []float32 { return make([]float32, n) }
	m.dres, m.dln, m.datty, m.dqkv = f(N*d.C), f(N*d.C), f(N*d.Cl), f(N*d.QKVl)
	m.dfch, m.dfchAct = f(N*d.FCl), f(N*d.Hl)
	if e.Threads() > 1 && cfg.Norm != RMSNorm {
		m.lnStats = f(2 * N)
	}
	if l.First && tp.Size() > 1 {
		m.embedOut = f(N * d.C)
	}
	m.acts = m.NewActs(maxB, maxT)
	return m, nil
}

// Init draws fresh parameters from seed (see Params.Init).
func (m *GPT) Init(seed uint64) { m.Params.Init(seed) }

func (m *GPT) bindWeights() {
	ps := m.Params
	get := func(name string) ([]float32, []float32) {
		p, ok := ps.Lookup(name)
		if !ok {
			return nil, nil
		}
		return p.Data, p.Grad
	}
	end := func(name string) int {
		p, ok := ps.Lookup(name)
		if !ok {
			return 0
		}
		return p.Offset + p.Size()
	}
	w := &m.w
	w.wte, w.dwte = get("wte.weight")
	m.TiedOffset = m.tiedOffset()
	w.wpe, w.dwpe = get("wpe.weight")
	w.lnfw, w.dlnfw = get("ln_f.weight")
	w.lnfb, w.dlnfb = get("ln_f.bias")
	w.head, w.dhead = w.wte, w.dwte
	if m.Config.UntiedHead {
		w.head, w.dhead = get("lm_head.weight")
	}
	w.headReady = max(end("ln_f.weight"), end("ln_f.bias"), end("lm_head.weight"))
	l := m.Layout
	ids := l.blockIDs()
	w.blocks = make([]blockWeights, len(ids))
	for i := range w.blocks {
		b := &w.blocks[i]
		p := fmt.Sprintf("h.%d.", ids[i])
		b.ln1w, b.dln1w = get(p + "ln_1.weight")
		b.ln1b, b.dln1b = get(p + "ln_1.bias")
		b.attnW, b.dattnW = get(p + "attn.c_attn.weight")
		b.attnB, b.dattnB = get(p + "attn.c_attn.bias")
		b.projW, b.dprojW = get(p + "attn.c_proj.weight")
		b.projB, b.dprojB = get(p + "attn.c_proj.bias")
		b.ln2w, b.dln2w = get(p + "ln_2.weight")
		b.ln2b, b.dln2b = get(p + "ln_2.bias")
		b.fcW, b.dfcW = get(p + "mlp.c_fc.weight")
		b.fcB, b.dfcB = get(p + "mlp.c_fc.bias")
		b.fcProjW, b.dfcProjW = get(p + "mlp.c_proj.weight")
		b.fcProjB, b.dfcProjB = get(p + "mlp.c_proj.bias")
		b.readyAfter = max(end(p+"ln_1.weight"), end(p+"ln_1.bias"))
		if m.residency != nil {
			b.parts = m.units.blocks[i]
		}
	}
}

// tiedOffset is where the tied embedding's gradient starts in Params.Grad
// (its tail), or len(Params.Grad) when this rank holds no tied embedding
// (an untied head, LoRA adapters, a middle stage).
func (m *GPT) tiedOffset() int {
	if p, ok := m.Params.Lookup("wte.weight"); ok && !m.Config.UntiedHead {
		return p.Offset
	}
	return len(m.Params.Grad)
}

// CheckInput validates a batch before it touches any buffer.
func (m *GPT) CheckInput(tokens, targets []int32, B, T int) error {
	if B <= 0 || B > m.MaxB {
		return fmt.Errorf("model: batch %d outside 1..%d", B, m.MaxB)
	}
	if T <= 0 || T > m.MaxT {
		if m.Config.Position == PosLearned && T > m.Config.NPositions {
			return fmt.Errorf("model: sequence length %d exceeds the %d trained positions of a learned-position model", T, m.Config.NPositions)
		}
		return fmt.Errorf("model: sequence length %d outside 1..%d", T, m.MaxT)
	}
	if tokens != nil && len(tokens) != B*T {
		return fmt.Errorf("model: %d tokens for a %dx%d batch", len(tokens), B, T)
	}
	if targets != nil && len(targets) != B*T {
		return fmt.Errorf("model: %d targets for a %dx%d batch", len(targets), B, T)
	}
	V := int32(m.Config.VocabSize)
	for i, t := range tokens {
		if t < 0 || t >= V {
			return fmt.Errorf("model: token id %d at position %d is outside the vocabulary of %d", t, i, V)
		}
	}
	for i, t := range targets {
		if t != IgnoreIndex && (t < 0 || t >= V) {
			return fmt.Errorf("model: target id %d at position %d is outside the vocabulary of %d", t, i, V)
		}
	}
	return nil
}

// Forward runs the whole (single-stage) model on tokens (B, T) with the
// model's own activations. With targets it returns the sum of per-position
// cross-entropy losses and the number of counted positions (targets equal
// to IgnoreIndex are skipped), ready for Backward. Without targets the
// logits are left in Logits().
func (m *GPT) Forward(tokens, targets []int32, B, T int) (lossSum float64, count int, err error) {
	return m.ForwardActs(context.Background(), m.acts, tokens, nil, targets, B, T)
}

// Backward accumulates parameter gradients for the last Forward (which must
// have had targets). lossScale multiplies dLoss/dlogit of every counted
// position: pass 1/(number of counted positions in the whole global batch)
// to get the gradient of the mean loss.
func (m *GPT) Backward(lossScale float32) {
	if err := m.BackwardActs(context.Background(), m.acts, nil, lossScale); err != nil {
		// only tensor-parallel communication can fail, and New's model is TP 1
		panic(err)
	}
}

// Logits returns the (B, T, V) logits of the last Forward without targets.
func (m *GPT) Logits() []float32 { return m.acts.Logits() }

// Losses returns the per-position losses (B*T) of the last Forward.
func (m *GPT) Losses() []float32 { return m.acts.losses[:m.acts.b*m.acts.t] }

// ActivationBytes is the memory of the default activations plus scratch.
func (m *GPT) ActivationBytes() int64 {
	n := len(m.dres) + len(m.dln) + len(m.datty) + len(m.dqkv) + len(m.dfch) + len(m.dfchAct) + len(m.embedOut)
	return int64(n)*4 + m.acts.Bytes() + m.bf16Bytes()
}

// Snapshot returns a copy of the model's parameters (no gradients, no
// activations) sharing its configuration and layout: enough to write a
// checkpoint in the background while training goes on.
func (m *GPT) Snapshot() *GPT {
	ps := *m.Params
	ps.Data = append([]float32(nil), m.Params.Data...)
	ps.Grad = nil
	ps.byName = make(map[string]*Param, len(m.Params.List))
	ps.List = make([]*Param, len(m.Params.List))
	for i, p := range m.Params.List {
		c := *p
		c.Data = ps.Data[p.Offset : p.Offset+p.Size() : p.Offset+p.Size()]
		c.Grad = nil
		ps.List[i], ps.byName[p.Name] = &c, &c
	}
	return &GPT{Config: m.Config, Layout: m.Layout, Params: &ps, MaxB: m.MaxB, MaxT: m.MaxT, gemm: m.gemm, local: m.local}
}
