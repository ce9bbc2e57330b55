package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// Param is one logical parameter tensor, a view into the flat buffers of
// its Params.
type Param struct {
	Name   string    // Hugging Face GPT-2 name, e.g. "h.0.attn.c_attn.weight"
	Shape  []int     // full logical shape; linear weights are [in, out]
	Decay  bool      // AdamW weight decay applies (matrices, not norms/biases/embeddings)
	Offset int       // position of Data within Params.Data
	Data   []float32 // values, len = product of Shape
	Grad   []float32 // gradient, same layout as Data
	init   initKind
	std    float64
}

type initKind int

const (
	initNormal initKind = iota
	initZeros
	initOnes
)

// Size is the number of elements.
func (p *Param) Size() int { return len(p.Data) }

// Params is the ordered set of a model's parameters over two flat buffers.
// List is in layout order: the parameters backward finishes first (the last
// layer's) come first.
type Params struct {
	List   []*Param
	Data   []float32
	Grad   []float32
	byName map[string]*Param
}

// Lookup returns the parameter with the given name.
func (ps *Params) Lookup(name string) (*Param, bool) {
	p, ok := ps.byName[name]
	return p, ok
}

// Count is the total number of parameter elements.
func (ps *Params) Count() int { return len(ps.Data) }

// ZeroGrad clears every gradient.
func (ps *Params) ZeroGrad() { clear(ps.Grad) }

// paramSpec is a parameter before the flat buffers exist.
type paramSpec struct {
	name  string
	shape []int
	decay bool
	init  initKind
	std   float64
}

// buildParams allocates the flat buffers for specs in the given order and
// wires each Param's Data and Grad views.
func buildParams(specs []paramSpec) *Params {
	total := 0
	for _, s := range specs {
		total += numel(s.shape)
	}
	ps := &Params{Data: make([]float32, total), Grad: make([]float32, total), byName: make(map[string]*Param, len(specs))}
	off := 0
	for _, s := range specs {
		n := numel(s.shape)
		p := &Param{Name: s.name, Shape: s.shape, Decay: s.decay, Offset: off, Data: ps.Data[off : off+n : off+n], Grad: ps.Grad[off : off+n : off+n], init: s.init, std: s.std}
		ps.List = append(ps.List, p)
		ps.byName[s.name] = p
		off += n
	}
	return ps
}

// Init fills every parameter from seed. Each parameter draws from its own
// generator seeded by (seed, hash of its name), so its values do not depend
// on which other parameters exist or in what order they are stored — any
// parallel layout initializes every logical tensor identically.
func (ps *Params) Init(seed uint64) {
	for _, p := range ps.List {
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
			for i := range p.Data {
				p.Data[i] = float32(r.NormFloat64() * p.std)
			}
		}
	}
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// paramSpecs lists the parameters of cfg in layout order (last layer first).
func paramSpecs(cfg Config) []paramSpec {
	C, V, H := cfg.NEmbd, cfg.VocabSize, cfg.Hidden()
	fcOut := H
	if cfg.Activation == SwiGLU {
		fcOut = 2 * H // gate and up projections side by side
	}
	std := cfg.InitStd
	projStd := std / math.Sqrt(2*float64(cfg.NLayer)) // GPT-2 scales residual projections
	norm := func(prefix string) []paramSpec {
		out := []paramSpec{{name: prefix + ".weight", shape: []int{C}, init: initOnes}}
		if cfg.Norm == LayerNorm {
			out = append(out, paramSpec{name: prefix + ".bias", shape: []int{C}, init: initZeros})
		}
		return out
	}
	linear := func(prefix string, in, out int, s float64) []paramSpec {
		return []paramSpec{
			{name: prefix + ".weight", shape: []int{in, out}, decay: true, init: initNormal, std: s},
			{name: prefix + ".bias", shape: []int{out}, init: initZeros},
		}
	}
	var specs []paramSpec
	specs = append(specs, norm("ln_f")...)
	for l := cfg.NLayer - 1; l >= 0; l-- {
		p := fmt.Sprintf("h.%d.", l)
		specs = append(specs, linear(p+"mlp.c_proj", H, C, projStd)...)
		specs = append(specs, linear(p+"mlp.c_fc", C, fcOut, std)...)
		specs = append(specs, norm(p+"ln_2")...)
		specs = append(specs, linear(p+"attn.c_proj", C, C, projStd)...)
		specs = append(specs, linear(p+"attn.c_attn", C, 3*C, std)...)
		specs = append(specs, norm(p+"ln_1")...)
	}
	if cfg.Position == PosLearned {
		specs = append(specs, paramSpec{name: "wpe.weight", shape: []int{cfg.NPositions, C}, init: initNormal, std: std})
	}
	specs = append(specs, paramSpec{name: "wte.weight", shape: []int{V, C}, init: initNormal, std: std})
	return specs
}
