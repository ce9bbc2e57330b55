package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"unsafe"

	"github.com/strand-ml/strand/parallel/tensor"
	"github.com/strand-ml/strand/vec"
)

// Param is one logical parameter tensor — or this rank's shard of it — as a
// view into the flat buffers of its Params.
type Param struct {
	Name   string           // Hugging Face GPT-2 name, e.g. "h.0.attn.c_attn.weight"
	Shape  []int            // full logical shape; linear weights are [in, out]
	Local  []int            // shape of the part held here (= Shape unless sharded)
	Shard  tensor.ShardSpec // how the logical tensor is cut across the TP group
	Decay  bool             // AdamW weight decay applies (matrices, not norms/biases/embeddings)
	Offset int              // position of Data within Params.Data
	Data   []float32        // values, len = product of Local
	Grad   []float32        // gradient, same layout as Data
	// InNorm says this rank counts the parameter in the global gradient
	// norm: replicated tensors are counted by TP rank 0 only, and the last
	// stage's copy of the tied embedding not at all.
	InNorm bool
	// TiedCopy marks the last pipeline stage's copy of wte.
	TiedCopy bool
	init     initKind
	std      float64
}

type initKind int

const (
	initNormal initKind = iota
	initZeros
	initOnes
)

// Size is the number of elements held here.
func (p *Param) Size() int { return len(p.Data) }

// Params is the ordered set of a model's parameters over two flat buffers.
// List is in layout order: the parameters backward finishes first (the last
// layer's) come first.
type Params struct {
	List   []*Param
	Data   []float32
	Grad   []float32
	byName map[string]*Param
	tpRank int
	tpSize int
	// partial is true when this rank holds only some blocks (a pipeline
	// stage), so a full checkpoint has tensors it skips.
	partial bool
	// clearer, when set (by the model that owns these parameters), clears
	// gradients on the model's compute goroutines.
	clearer interface {
		clearSplit([]float32)
		sumSquaresSplit(*Params) float64
	}
	// stale[i] says List[i].Grad still holds an earlier step's values
	// (ResetGrad): the next backward's first write to it overwrites
	// instead of adding. nStale counts the true entries.
	stale  []bool
	nStale int
}

// Lookup returns the parameter with the given name.
func (ps *Params) Lookup(name string) (*Param, bool) {
	p, ok := ps.byName[name]
	return p, ok
}

// Count is the total number of parameter elements held here.
func (ps *Params) Count() int { return len(ps.Data) }

// ZeroGrad clears every gradient (on the owning model's compute
// goroutines: a memory-bound pass that two cores finish faster than one).
func (ps *Params) ZeroGrad() {
	ps.markStale(false)
	if ps.clearer != nil {
		ps.clearer.clearSplit(ps.Grad)
		return
	}
	clear(ps.Grad)
}

// ResetGrad starts a step without touching the gradient memory: the
// owning model's next backward overwrites each gradient with its first
// contribution (a GEMM with beta=0 instead of clearing and adding) and
// clears any gradient it does not write as soon as that gradient is
// reported ready (GPT.GradReady) or the backward ends. Later backwards
// (more micro-batches) accumulate as after ZeroGrad. Between ResetGrad and
// the end of the next backward Grad holds stale values: read it only
// after a backward, or call ZeroGrad instead. Without an owning model it
// is ZeroGrad.
func (ps *Params) ResetGrad() {
	if ps.clearer == nil {
		ps.ZeroGrad()
		return
	}
	ps.markStale(true)
}

func (ps *Params) markStale(on bool) {
	if !on && ps.nStale == 0 {
		return
	}
	if len(ps.stale) != len(ps.List) {
		ps.stale = make([]bool, len(ps.List))
	}
	for i := range ps.stale {
		ps.stale[i] = on
	}
	ps.nStale = 0
	if on {
		ps.nStale = len(ps.stale)
	}
}

// claim reports whether g (a parameter's whole gradient) is stale, and
// marks it fresh: the caller then writes g instead of adding to it.
// Slices outside Grad (a frozen base's gradients) are never stale.
func (ps *Params) claim(g []float32) bool {
	i := ps.index(g)
	if i < 0 || !ps.stale[i] {
		return false
	}
	ps.stale[i] = false
	ps.nStale--
	return true
}

// index is the position in List of the parameter whose gradient starts
// where g does, or -1 (nothing stale, or g not a parameter gradient).
func (ps *Params) index(g []float32) int {
	if ps.nStale == 0 || len(g) == 0 || len(ps.Grad) == 0 {
		return -1
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(ps.Grad)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(g)))
	if at < base || at >= base+uintptr(len(ps.Grad))*4 {
		return -1
	}
	off := int(at-base) / 4
	i := sort.Search(len(ps.List), func(i int) bool { return ps.List[i].Offset >= off })
	if i == len(ps.List) || ps.List[i].Offset != off || len(g) != len(ps.List[i].Grad) {
		return -1
	}
	return i
}

// clearStale clears the stale gradients (marking them fresh) of the
// parameters that end within Grad[:n]: those the backward did not write
// before reporting them ready.
func (ps *Params) clearStale(n int) {
	if ps.nStale == 0 {
		return
	}
	for i, p := range ps.List {
		if ps.stale[i] && p.Offset+len(p.Grad) <= n {
			clear(p.Grad)
			ps.stale[i] = false
			ps.nStale--
		}
	}
}

// NormSumSquares is this rank's share of the squared global gradient norm:
// the sum of squares of every gradient it counts (see Param.InNorm).
//
// Each parameter's sum is vec.SumSquares (float64, an order fixed by its
// length); the sums are added in parameter order. With an owning model
// the parameters are spread over its compute goroutines, which changes no
// bit.
func (ps *Params) NormSumSquares() float64 {
	if ps.clearer != nil {
		return ps.clearer.sumSquaresSplit(ps)
	}
	var s float64
	for _, p := range ps.List {
		if p.InNorm {
			s += vec.SumSquares(p.Grad)
		}
	}
	return s
}

// paramSpec is a parameter before the flat buffers exist.
type paramSpec struct {
	name     string
	shape    []int
	shard    tensor.ShardSpec
	decay    bool
	tiedCopy bool
	init     initKind
	std      float64
}

// buildParams allocates the flat buffers for specs in the given order and
// wires each Param's Data and Grad views, as shard tpRank of tpSize.
func buildParams(specs []paramSpec, tpRank, tpSize int) (*Params, error) {
	return buildParamsIn(specs, tpRank, tpSize, nil)
}

// buildParamsIn is buildParams with the flat buffers from alloc (nil:
// make).
func buildParamsIn(specs []paramSpec, tpRank, tpSize int, alloc Alloc) (*Params, error) {
	locals := make([][]int, len(specs))
	total := 0
	for i, s := range specs {
		l, err := s.shard.LocalShape(s.shape, tpSize)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", s.name, err)
		}
		locals[i] = l
		total += Numel(l)
	}
	if alloc == nil {
		alloc = func(n int) ([]float32, error) { return make([]float32, n), nil }
	}
	data, err := alloc(total)
	if err != nil {
		return nil, err
	}
	grad, err := alloc(total)
	if err != nil {
		return nil, err
	}
	ps := &Params{Data: data, Grad: grad, byName: make(map[string]*Param, len(specs)), tpRank: tpRank, tpSize: tpSize}
	off := 0
	for i, s := range specs {
		n := Numel(locals[i])
		p := &Param{Name: s.name, Shape: s.shape, Local: locals[i], Shard: s.shard, Decay: s.decay, Offset: off,
			Data: ps.Data[off : off+n : off+n], Grad: ps.Grad[off : off+n : off+n], TiedCopy: s.tiedCopy, init: s.init, std: s.std}
		p.InNorm = !s.tiedCopy && (!s.shard.IsReplicated() || tpRank == 0 || tpSize == 1)
		ps.List = append(ps.List, p)
		ps.byName[s.name] = p
		off += n
	}
	return ps, nil
}

// Init fills every parameter from seed. Each logical tensor draws from its
// own generator seeded by (seed, hash of its name) and each rank keeps its
// shard of it, so any parallel layout holds exactly the values a single
// process would.
func (ps *Params) Init(seed uint64) {
	for _, p := range ps.List {
		ps.initParam(p, seed)
	}
}

// initParam fills one parameter from seed (see Init).
func (ps *Params) initParam(p *Param, seed uint64) {
	switch p.init {
	case initZeros:
		clear(p.Data)
	case initOnes:
		for i := range p.Data {
			p.Data[i] = 1
		}
	case initNormal:
		h := fnv.New64a()
		h.Write([]byte(p.Name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		full := p.Data
		if len(p.Data) != Numel(p.Shape) {
			full = make([]float32, Numel(p.Shape))
		}
		for i := range full {
			full[i] = float32(r.NormFloat64() * p.std)
		}
		if len(p.Data) != len(full) {
			p.Shard.Extract(p.Data, full, p.Shape, ps.tpRank, ps.tpSize)
		}
	}
}

// SetFull stores a full logical tensor into the parameter, keeping this
// rank's shard of it (used when loading checkpoints).
func (ps *Params) SetFull(p *Param, dst, full []float32) {
	if len(full) == len(dst) {
		copy(dst, full)
		return
	}
	p.Shard.Extract(dst, full, p.Shape, ps.tpRank, ps.tpSize)
}

// Numel is the number of elements of a tensor of the given shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// paramSpecs lists the parameters held under layout l, in layout order
// (the last layer's first).
func paramSpecs(cfg Config, l Layout) []paramSpec {
	C, V, H := cfg.NEmbd, cfg.VocabSize, cfg.Hidden()
	fcOut, fcParts := H, 1
	if cfg.Activation == SwiGLU {
		fcOut, fcParts = 2*H, 2 // gate and up projections side by side
	}
	std := cfg.InitStd
	projStd := std / math.Sqrt(2*float64(cfg.NLayer)) // GPT-2 scales residual projections
	norm := func(prefix string) []paramSpec {
		out := []paramSpec{{name: prefix + ".weight", shape: []int{C}, shard: tensor.Replicated, init: initOnes}}
		if cfg.Norm == LayerNorm {
			out = append(out, paramSpec{name: prefix + ".bias", shape: []int{C}, shard: tensor.Replicated, init: initZeros})
		}
		return out
	}
	// column-parallel: output features split (weight axis 1, bias axis 0)
	column := func(prefix string, in, out, parts int, s float64, bias bool) []paramSpec {
		out2 := []paramSpec{{name: prefix + ".weight", shape: []int{in, out}, shard: tensor.Split(1, parts), decay: true, init: initNormal, std: s}}
		if bias {
			out2 = append(out2, paramSpec{name: prefix + ".bias", shape: []int{out}, shard: tensor.Split(0, parts), init: initZeros})
		}
		return out2
	}
	// row-parallel: input features split (in parts chunks); the bias is
	// added after the reduction
	row := func(prefix string, in, out, parts int, s float64, bias bool) []paramSpec {
		out2 := []paramSpec{{name: prefix + ".weight", shape: []int{in, out}, shard: tensor.Split(0, parts), decay: true, init: initNormal, std: s}}
		if bias {
			out2 = append(out2, paramSpec{name: prefix + ".bias", shape: []int{out}, shard: tensor.Replicated, init: initZeros})
		}
		return out2
	}
	// grouped-query attention: q is G chunks of KV heads (Config.KVGroup),
	// so c_attn is G+2 equal chunks and c_proj's input G. With kv heads
	// replicated over R ranks (kvrep.go) c_attn is held whole by every
	// rank and c_proj's input is G/R chunks of TP heads.
	G, KV := cfg.KVGroup(), cfg.KVDim()
	R := kvReplicas(cfg, l.tp().Size())
	wte := paramSpec{name: "wte.weight", shape: []int{V, C}, shard: tensor.Split(0, 1), init: initNormal, std: std}
	var specs []paramSpec
	if l.Last && cfg.UntiedHead {
		// the untied head, vocabulary-parallel like wte
		specs = append(specs, paramSpec{name: "lm_head.weight", shape: []int{V, C}, shard: tensor.Split(0, 1), init: initNormal, std: std})
	}
	if l.Last {
		specs = append(specs, norm("ln_f")...)
	}
	ids := l.blockIDs()
	for i := len(ids) - 1; i >= 0; i-- {
		p := fmt.Sprintf("h.%d.", ids[i])
		specs = append(specs, row(p+"mlp.c_proj", H, C, 1, projStd, cfg.HasBias("fcproj"))...)
		specs = append(specs, column(p+"mlp.c_fc", C, fcOut, fcParts, std, cfg.HasBias("fc"))...)
		specs = append(specs, norm(p+"ln_2")...)
		specs = append(specs, row(p+"attn.c_proj", C, C, G/R, projStd, cfg.HasBias("proj"))...)
		qkv := column(p+"attn.c_attn", C, C+2*KV, G+2, std, cfg.HasBias("qkv"))
		if R > 1 {
			for i := range qkv {
				qkv[i].shard = tensor.Replicated
			}
		}
		specs = append(specs, qkv...)
		specs = append(specs, norm(p+"ln_1")...)
	}
	if l.First {
		if cfg.Position == PosLearned {
			specs = append(specs, paramSpec{name: "wpe.weight", shape: []int{cfg.NPositions, C}, shard: tensor.Replicated, init: initNormal, std: std})
		}
		specs = append(specs, wte)
	} else if l.Last && !cfg.UntiedHead {
		// The last stage's copy of the tied embedding also goes at the end,
		// so on every stage that holds wte its gradient is the buffer's
		// tail: the trainer sums it across the two stages before the
		// data-parallel reduction of that tail.
		tied := wte
		tied.tiedCopy = true
		specs = append(specs, tied)
	}
	return specs
}
