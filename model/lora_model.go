package model

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/strand-ml/strand/parallel/tensor"
)

// LoRA fine-tuning of a GPT (see lora.go for the layer). EnableLoRA adds
// adapters (h.N.<target>.lora_A (in, r) and .lora_B (r, out)) to the chosen
// projections of this rank's blocks and freezes every base weight. The
// adapters then ARE the model's trainable parameters: m.Params points at
// them (the base weights move to LoRA.Base), so a trainer's zeroing,
// data-parallel reduction, clipping, optimizer state and checkpoints cover
// the adapters only, without knowing about LoRA. The gradients of the base
// projections and embeddings are not computed (the norms, cheap vectors,
// still fill their unused buffers in LoRA.Base).
//
// Tensor parallelism: an adapter shards like its base layer (lora.go).
// Two small all-reduces of (N, r) keep the replicated factor's gradient
// exact: for a column-parallel target, the gradient on inp @ A is summed
// over the TP group before dA; for a row-parallel target, inp @ A (a
// partial sum) is summed after the forward so dB sees the whole product.

// loraTargetNames are the projections adapters can be put on, by kind
// (read-only): strand's four linear layers, and the Hugging Face
// projections that are column ranges of the fused ones (q_proj, k_proj,
// v_proj of c_attn; gate_proj, up_proj of a SwiGLU c_fc). An adapter on
// a range adds to those output columns only, as PEFT's adapter on the
// separate projection does.
var loraTargetNames = [loraKinds]string{"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj",
	"attn.q_proj", "attn.k_proj", "attn.v_proj", "mlp.gate_proj", "mlp.up_proj"}

// loraAliases are the Hugging Face names of the targets (the projections
// that are whole strand layers keep their strand kind).
var loraAliases = map[string]int{"q_proj": loraQ, "k_proj": loraK, "v_proj": loraV, "o_proj": loraProj,
	"gate_proj": loraGate, "up_proj": loraUp, "down_proj": loraFCProj}

const (
	loraQKV = iota
	loraProj
	loraFC
	loraFCProj
	loraQ
	loraK
	loraV
	loraGate
	loraUp
	loraKinds
)

// loraLayer is the base layer each kind adapts (a kind of the first four).
var loraLayer = [loraKinds]int{loraQKV, loraProj, loraFC, loraFCProj, loraQKV, loraQKV, loraQKV, loraFC, loraFC}

// LoRATargets lists the valid --lora-targets names.
func LoRATargets() []string {
	out := append([]string(nil), loraTargetNames[:loraQ]...)
	return append(out, "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
}

// LoRAConfig chooses the adapters.
type LoRAConfig struct {
	Rank    int      `json:"r"`
	Alpha   float64  `json:"lora_alpha"`
	Targets []string `json:"target_modules"`
}

// Scale is alpha / rank.
func (c LoRAConfig) Scale() float32 { return float32(c.Alpha / float64(c.Rank)) }

// Validate reports the first bad field.
func (c LoRAConfig) Validate() error {
	if c.Rank <= 0 {
		return fmt.Errorf("lora rank %d must be positive", c.Rank)
	}
	if !(c.Alpha > 0) {
		return fmt.Errorf("lora alpha %g must be positive", c.Alpha)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("lora: no target projections (choose from %s)", strings.Join(LoRATargets(), ", "))
	}
	seen := map[int]string{}
	for _, t := range c.Targets {
		k := loraKind(t)
		if k < 0 {
			return fmt.Errorf("lora target %q is not one of %s", t, strings.Join(LoRATargets(), ", "))
		}
		if prev, ok := seen[k]; ok {
			return fmt.Errorf("lora target %q listed twice (as %q)", t, prev)
		}
		seen[k] = t
	}
	for k, t := range seen {
		if k >= loraQ {
			if whole, ok := seen[loraLayer[k]]; ok {
				return fmt.Errorf("lora targets %q and %q overlap (%s is part of %s)", whole, t, t, whole)
			}
		}
	}
	return nil
}

// validateFor checks the targets against the architecture.
func (c LoRAConfig) validateFor(cfg Config) error {
	for _, t := range c.Targets {
		if k := loraKind(t); (k == loraGate || k == loraUp) && cfg.Activation != SwiGLU {
			return fmt.Errorf("lora target %q needs a SwiGLU MLP (the model's activation is %s)", t, cfg.Activation)
		}
	}
	return nil
}

func loraKind(name string) int {
	if k, ok := loraAliases[name]; ok {
		return k
	}
	for k, n := range loraTargetNames {
		if n == name {
			return k
		}
	}
	return -1
}

// LoRA holds a model's adapters and its frozen base parameters.
type LoRA struct {
	Config LoRAConfig
	Base   *Params // the frozen base weights (m.Params before EnableLoRA)
	scale  float32
	dh     []float32 // (maxB*maxT, r) backward scratch
	saved  []blockWeights
	head   int
	dwte   []float32 // the embeddings' gradient views, restored by MergeLoRA
	dwpe   []float32
	dhead  []float32 // the LM head's gradient view (dwte when tied)
}

// loraBlock is one block's adapter views, by target kind (nil: no adapter).
type loraBlock struct {
	a, b, da, db [loraKinds][]float32
}

// loraDims are target k's (input, output) widths on this rank.
func (m *GPT) loraDims(k int) (in, out int) {
	in, _, lo, hi := m.loraCols(k)
	return in, hi - lo
}

// loraCols places target k on this rank: the input width, the width of
// its base layer's output (the leading dimension) and the output
// columns [lo, hi) the adapter adds to.
func (m *GPT) loraCols(k int) (in, ld, lo, hi int) {
	d := m.local
	switch k {
	case loraQKV:
		return d.C, d.QKVl, 0, d.QKVl
	case loraProj:
		return d.Cl, d.C, 0, d.C
	case loraFC:
		return d.C, d.FCl, 0, d.FCl
	case loraFCProj:
		return d.Hl, d.C, 0, d.C
	case loraQ:
		return d.C, d.QKVl, 0, d.Cl
	case loraK:
		return d.C, d.QKVl, d.Cl, d.Cl + d.KVl
	case loraV:
		return d.C, d.QKVl, d.Cl + d.KVl, d.QKVl
	case loraGate:
		return d.C, d.FCl, 0, d.Hl
	}
	return d.C, d.FCl, d.Hl, d.FCl // loraUp
}

// loraColumnParallel reports whether kind k adapts a column-parallel
// layer (its output split over TP): its A is replicated.
func loraColumnParallel(k int) bool { return loraLayer[k] == loraQKV || loraLayer[k] == loraFC }

// loraSpecs lists the adapters of layout l in layout order (last block
// first, within a block in backward order), sharded like their base layer.
func loraSpecs(cfg Config, l Layout, lc LoRAConfig) []paramSpec {
	C, H := cfg.NEmbd, cfg.Hidden()
	fcOut, fcParts := H, 1
	if cfg.Activation == SwiGLU {
		fcOut, fcParts = 2*H, 2
	}
	G, KV := cfg.KVGroup(), cfg.KVDim()
	full := [loraKinds][2]int{{C, C + 2*KV}, {C, C}, {C, fcOut}, {H, C}, {C, C}, {C, KV}, {C, KV}, {C, H}, {C, H}}
	// column-parallel: B split on its output in parts chunks (as the base
	// layer's columns); row-parallel: A split on its input in rowParts
	parts := [loraKinds]int{G + 2, 0, fcParts, 0, G, 1, 1, 1, 1}
	rowParts := [loraKinds]int{0, G / kvReplicas(cfg, l.tp().Size()), 0, 1} // as c_proj's rows (params.go)
	on := [loraKinds]bool{}
	for _, t := range lc.Targets {
		on[loraKind(t)] = true
	}
	var specs []paramSpec
	ids := l.blockIDs()
	for i := len(ids) - 1; i >= 0; i-- {
		b := ids[i]
		for _, k := range loraBackwardOrder {
			if !on[k] {
				continue
			}
			in, out := full[k][0], full[k][1]
			p := fmt.Sprintf("h.%d.%s.", b, loraTargetNames[k])
			a := paramSpec{name: p + "lora_A", shape: []int{in, lc.Rank}, shard: tensor.Replicated, init: initNormal, std: 1 / math.Sqrt(float64(in))}
			bs := paramSpec{name: p + "lora_B", shape: []int{lc.Rank, out}, shard: tensor.Replicated, init: initZeros}
			if parts[k] > 0 {
				bs.shard = tensor.Split(1, parts[k]) // column-parallel: B follows W's output split
			} else {
				a.shard = tensor.Split(0, rowParts[k]) // row-parallel: A follows W's input split
			}
			specs = append(specs, bs, a)
		}
	}
	return specs
}

// loraBackwardOrder is the order a block's backward meets the adapters;
// loraForwardOrder the forward's. The first four keep the order of the
// strand layers' adapters from before the Hugging Face ranges existed.
var (
	loraBackwardOrder = []int{loraFCProj, loraUp, loraGate, loraFC, loraProj, loraV, loraK, loraQ, loraQKV}
	loraForwardOrder  = []int{loraQKV, loraQ, loraK, loraV, loraProj, loraFC, loraGate, loraUp, loraFCProj}
)

// EnableLoRA adds adapters drawn from seed (A random, B zero: the adapted
// model starts equal to the base) and makes them m.Params; load the base
// weights before calling it.
func (m *GPT) EnableLoRA(lc LoRAConfig, seed uint64) error {
	if m.LoRA != nil {
		return fmt.Errorf("model: LoRA is already enabled")
	}
	if err := lc.Validate(); err != nil {
		return err
	}
	if err := lc.validateFor(m.Config); err != nil {
		return err
	}
	if m.kvrep != nil {
		for _, t := range lc.Targets {
			if loraLayer[loraKind(t)] == loraQKV {
				return fmt.Errorf("lora target %q: adapters on c_attn are not supported with kv heads replicated over tensor parallelism %d", t, m.tp.Size())
			}
		}
	}
	tp := m.Layout.TP
	ps, err := buildParams(loraSpecs(m.Config, m.Layout, lc), tp.Rank(), tp.Size())
	if err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	ps.partial = m.Params.partial
	ps.Init(seed)
	lo := &LoRA{Config: lc, Base: m.Params, scale: lc.Scale(), dh: make([]float32, m.MaxB*m.MaxT*lc.Rank), head: m.w.headReady}
	lo.saved = append([]blockWeights(nil), m.w.blocks...)
	ids := m.Layout.blockIDs()
	for i := range m.w.blocks {
		bw := &m.w.blocks[i]
		lb := &loraBlock{}
		end := 0
		for k := 0; k < loraKinds; k++ {
			p := fmt.Sprintf("h.%d.%s.", ids[i], loraTargetNames[k])
			a, okA := ps.Lookup(p + "lora_A")
			b, okB := ps.Lookup(p + "lora_B")
			if okA && okB {
				lb.a[k], lb.da[k], lb.b[k], lb.db[k] = a.Data, a.Grad, b.Data, b.Grad
				end = max(end, a.Offset+a.Size(), b.Offset+b.Size())
			}
		}
		bw.lora = lb
		bw.readyAfter = end
		// frozen base projections: no weight gradients
		bw.dattnW, bw.dattnB, bw.dprojW, bw.dprojB = nil, nil, nil, nil
		bw.dfcW, bw.dfcB, bw.dfcProjW, bw.dfcProjB = nil, nil, nil, nil
	}
	// blocks are laid out last first: a block's adapters end where the
	// next block's begin, so fill readyAfter of adapter-less blocks upward
	for i := len(m.w.blocks) - 2; i >= 0; i-- {
		m.w.blocks[i].readyAfter = max(m.w.blocks[i].readyAfter, m.w.blocks[i+1].readyAfter)
	}
	m.w.headReady = 0
	// frozen embeddings: no gradient from the tied head nor the input
	lo.dwte, lo.dwpe, lo.dhead = m.w.dwte, m.w.dwpe, m.w.dhead
	m.w.dwte, m.w.dwpe, m.w.dhead = nil, nil, nil
	m.LoRA = lo
	m.Params = ps
	m.TiedOffset = len(ps.Grad) // the adapters hold no tied embedding
	return nil
}

// MergeLoRA folds every adapter into its base weight (W += scale * A @ B,
// on each rank's shards) and returns the model to its base parameters
// with gradients as before EnableLoRA.
func (m *GPT) MergeLoRA() error {
	lo := m.LoRA
	if lo == nil {
		return fmt.Errorf("model: LoRA is not enabled")
	}
	r := lo.Config.Rank
	for i := range m.w.blocks {
		bw, lb := &m.w.blocks[i], m.w.blocks[i].lora
		ws := [4][]float32{bw.attnW, bw.projW, bw.fcW, bw.fcProjW}
		for k := 0; k < loraKinds; k++ {
			if lb.a[k] == nil {
				continue
			}
			// W[:, c0:c1] (in, ld) += scale * A @ B
			in, ld, c0, c1 := m.loraCols(k)
			m.gemm.Sgemm(false, false, in, c1-c0, r, lo.scale, lb.a[k], r, lb.b[k], c1-c0, 1, ws[loraLayer[k]][c0:], ld)
		}
	}
	copy(m.w.blocks, lo.saved)
	m.w.headReady = lo.head
	m.w.dwte, m.w.dwpe, m.w.dhead = lo.dwte, lo.dwpe, lo.dhead
	m.Params = lo.Base
	m.TiedOffset = m.tiedOffset()
	m.LoRA = nil
	return nil
}

// loraLayerForward adds the terms of every adapter on base layer layer
// (one of the first four kinds) to out, in a fixed order.
func (m *GPT) loraLayerForward(ctx context.Context, ba *blockActs, bw *blockWeights, layer int, out, inp []float32, N int) error {
	if bw.lora == nil {
		return nil
	}
	for _, k := range loraForwardOrder {
		if loraLayer[k] == layer && bw.lora.a[k] != nil {
			if err := m.loraForward(ctx, ba, bw, k, out, inp, N); err != nil {
				return err
			}
		}
	}
	return nil
}

// loraForward adds target k's adapter term to its columns of out (the
// base layer's output, or partial sums for a row-parallel layer) for inp
// (N, in): LoRAForward on a column range.
func (m *GPT) loraForward(ctx context.Context, ba *blockActs, bw *blockWeights, k int, out, inp []float32, N int) error {
	lb, r := bw.lora, m.LoRA.Config.Rank
	in, ld, c0, c1 := m.loraCols(k)
	o := c1 - c0
	h := m.loraActs(ba, k, N)[:N*r]
	m.gemm.Sgemm(false, false, N, r, in, 1, inp, in, lb.a[k], r, 0, h, r)
	m.gemm.Sgemm(false, false, N, o, r, m.LoRA.scale, h, r, lb.b[k], o, 1, out[c0:], ld)
	if !loraColumnParallel(k) {
		// row-parallel: h is this rank's partial inp @ A; dB needs the sum
		if err := m.tp.AllReduceSum(ctx, h); err != nil {
			return fmt.Errorf("lora %s all-reduce: %w", loraTargetNames[k], err)
		}
	}
	return nil
}

// loraRank is the adapters' rank, 0 without LoRA.
func (m *GPT) loraRank() int {
	if m.LoRA == nil {
		return 0
	}
	return m.LoRA.Config.Rank
}

// loraActs is ba's buffer for adapter k's inp @ A, at least (N, rank):
// allocated (MaxB*MaxT, rank) on first use, once per Acts. A lane's row
// view of it is already long enough for the lane's N rows.
func (m *GPT) loraActs(ba *blockActs, k, N int) []float32 {
	if r := m.loraRank(); len(ba.lora[k]) < N*r {
		ba.lora[k] = make([]float32, m.MaxB*m.MaxT*r)
	}
	return ba.lora[k]
}

// ensureLoRAActs allocates a's inp @ A buffers for every adapter before
// lanes take row views of them (in the serial forward, loraForward
// allocates each on first use).
func (m *GPT) ensureLoRAActs(a *Acts) {
	if m.LoRA == nil {
		return
	}
	for j := range a.blocks {
		if lb := m.w.blocks[a.lo+j].lora; lb != nil {
			for k := range loraKinds {
				if lb.a[k] != nil {
					m.loraActs(&a.blocks[j], k, m.MaxB*m.MaxT)
				}
			}
		}
	}
}

// loraLayerBackward runs the backward of every adapter on base layer
// layer, in a fixed order (the forward's reversed).
func (m *GPT) loraLayerBackward(ctx context.Context, ba *blockActs, bw *blockWeights, layer int, dinp, dout, inp []float32, N int) error {
	if bw.lora == nil {
		return nil
	}
	for _, k := range loraBackwardOrder {
		if loraLayer[k] == layer && bw.lora.a[k] != nil {
			if err := m.loraBackward(ctx, ba, bw, k, dinp, dout, inp, N); err != nil {
				return err
			}
		}
	}
	return nil
}

// loraBackward accumulates target k's adapter gradients and adds its
// share of the input gradient to dinp.
func (m *GPT) loraBackward(ctx context.Context, ba *blockActs, bw *blockWeights, k int, dinp, dout, inp []float32, N int) error {
	lb, r, s := bw.lora, m.LoRA.Config.Rank, m.LoRA.scale
	in, ld, c0, c1 := m.loraCols(k)
	o := c1 - c0
	h, dh := ba.lora[k][:N*r], m.LoRA.dh[:N*r]
	e := m.gemm
	dout = dout[c0:] // the adapter's columns, leading dimension ld
	// dh = s * dout @ B^T ; dB += s * h^T @ dout ; dinp += dh @ A^T
	e.Sgemm(false, true, N, r, o, s, dout, ld, lb.b[k], o, 0, dh, r)
	e.Sgemm(true, false, r, o, N, s, h, r, dout, ld, m.gradBeta(lb.db[k]), lb.db[k], o)
	e.Sgemm(false, true, N, in, r, 1, dh, r, lb.a[k], r, 1, dinp, in)
	if loraColumnParallel(k) {
		// column-parallel: dh is partial over the output split; A needs
		// the sum (dinp's partial sum is reduced by the caller)
		if err := m.tp.AllReduceSum(ctx, dh); err != nil {
			return fmt.Errorf("lora %s gradient all-reduce: %w", loraTargetNames[k], err)
		}
	}
	e.Sgemm(true, false, in, r, N, 1, inp, in, dh, r, m.gradBeta(lb.da[k]), lb.da[k], r)
	return nil
}
