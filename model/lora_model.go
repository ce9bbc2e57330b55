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
// (read-only).
var loraTargetNames = [loraKinds]string{"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}

const (
	loraQKV = iota
	loraProj
	loraFC
	loraFCProj
	loraKinds
)

// LoRATargets lists the valid --lora-targets names.
func LoRATargets() []string { return loraTargetNames[:] }

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
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if loraKind(t) < 0 {
			return fmt.Errorf("lora target %q is not one of %s", t, strings.Join(LoRATargets(), ", "))
		}
		if seen[t] {
			return fmt.Errorf("lora target %q listed twice", t)
		}
		seen[t] = true
	}
	return nil
}

func loraKind(name string) int {
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

// dims are a target's (input, output) widths on this rank.
func (m *GPT) loraDims(k int) (in, out int) {
	d := m.local
	switch k {
	case loraQKV:
		return d.C, d.QKVl
	case loraProj:
		return d.Cl, d.C
	case loraFC:
		return d.C, d.FCl
	}
	return d.Hl, d.C
}

// loraSpecs lists the adapters of layout l in layout order (last block
// first, within a block in backward order), sharded like their base layer.
func loraSpecs(cfg Config, l Layout, lc LoRAConfig) []paramSpec {
	C, H := cfg.NEmbd, cfg.Hidden()
	fcOut, fcParts := H, 1
	if cfg.Activation == SwiGLU {
		fcOut, fcParts = 2*H, 2
	}
	G := cfg.KVGroup()
	full := [loraKinds][2]int{{C, C + 2*cfg.KVDim()}, {C, C}, {C, fcOut}, {H, C}}
	parts := [loraKinds]int{G + 2, 0, fcParts, 0} // 0: row-parallel, split in rowParts chunks
	rowParts := [loraKinds]int{0, G, 0, 1}
	on := [loraKinds]bool{}
	for _, t := range lc.Targets {
		on[loraKind(t)] = true
	}
	var specs []paramSpec
	for b := l.EndBlock - 1; b >= l.FirstBlock; b-- {
		for _, k := range []int{loraFCProj, loraFC, loraProj, loraQKV} {
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
	tp := m.Layout.TP
	ps, err := buildParams(loraSpecs(m.Config, m.Layout, lc), tp.Rank(), tp.Size())
	if err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	ps.partial = m.Params.partial
	ps.Init(seed)
	lo := &LoRA{Config: lc, Base: m.Params, scale: lc.Scale(), dh: make([]float32, m.MaxB*m.MaxT*lc.Rank), head: m.w.headReady}
	lo.saved = append([]blockWeights(nil), m.w.blocks...)
	for i := range m.w.blocks {
		bw := &m.w.blocks[i]
		lb := &loraBlock{}
		end := 0
		for k := 0; k < loraKinds; k++ {
			p := fmt.Sprintf("h.%d.%s.", m.Layout.FirstBlock+i, loraTargetNames[k])
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
		ws := [loraKinds][]float32{bw.attnW, bw.projW, bw.fcW, bw.fcProjW}
		for k := 0; k < loraKinds; k++ {
			if lb.a[k] == nil {
				continue
			}
			in, out := m.loraDims(k)
			MergeLoRA(m.gemm, ws[k], lb.a[k], lb.b[k], in, out, r, lo.scale)
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

// loraForward adds target k's adapter term to out (the base layer's
// output, or partial sums for a row-parallel layer) for inp (N, in).
func (m *GPT) loraForward(ctx context.Context, ba *blockActs, bw *blockWeights, k int, out, inp []float32, N int) error {
	if bw.lora == nil || bw.lora.a[k] == nil {
		return nil
	}
	lb, r := bw.lora, m.LoRA.Config.Rank
	in, o := m.loraDims(k)
	h := m.loraActs(ba, k, N)[:N*r]
	LoRAForward(m.gemm, out, h, inp, lb.a[k], lb.b[k], N, in, o, r, m.LoRA.scale)
	if k == loraProj || k == loraFCProj {
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
		if lb := m.w.blocks[j].lora; lb != nil {
			for k := range loraKinds {
				if lb.a[k] != nil {
					m.loraActs(&a.blocks[j], k, m.MaxB*m.MaxT)
				}
			}
		}
	}
}

// loraBackward accumulates target k's adapter gradients and adds its
// share of the input gradient to dinp.
func (m *GPT) loraBackward(ctx context.Context, ba *blockActs, bw *blockWeights, k int, dinp, dout, inp []float32, N int) error {
	if bw.lora == nil || bw.lora.a[k] == nil {
		return nil
	}
	lb, r, s := bw.lora, m.LoRA.Config.Rank, m.LoRA.scale
	in, o := m.loraDims(k)
	h, dh := ba.lora[k][:N*r], m.LoRA.dh[:N*r]
	e := m.gemm
	// dh = s * dout @ B^T ; dB += s * h^T @ dout ; dinp += dh @ A^T
	e.Sgemm(false, true, N, r, o, s, dout, o, lb.b[k], o, 0, dh, r)
	e.Sgemm(true, false, r, o, N, s, h, r, dout, o, m.gradBeta(lb.db[k]), lb.db[k], o)
	e.Sgemm(false, true, N, in, r, 1, dh, r, lb.a[k], r, 1, dinp, in)
	if k == loraQKV || k == loraFC {
		// column-parallel: dh is partial over the output split; A needs
		// the sum (dinp's partial sum is reduced by the caller)
		if err := m.tp.AllReduceSum(ctx, dh); err != nil {
			return fmt.Errorf("lora %s gradient all-reduce: %w", loraTargetNames[k], err)
		}
	}
	e.Sgemm(true, false, in, r, N, 1, inp, in, dh, r, m.gradBeta(lb.da[k]), lb.da[k], r)
	return nil
}
