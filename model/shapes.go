package model

import "fmt"

// ParamShape is one parameter as a layout holds it, without its values:
// what memory planning needs to know before (or instead of) allocating the
// model.
type ParamShape struct {
	Name     string // Hugging Face GPT-2 name, e.g. "h.0.attn.c_attn.weight"
	Shape    []int  // full logical shape
	Local    []int  // shape of the part this rank holds (its TP shard)
	TiedCopy bool   // the last pipeline stage's copy of wte
}

// Size is the number of elements held here.
func (p ParamShape) Size() int { return Numel(p.Local) }

// ParamShapes lists the parameters layout l holds for cfg, in layout order
// (the order of Params.List: the last layer's first), with their local
// shapes on l's tensor-parallel rank. It allocates no parameter memory, so
// a model too large for this machine can still be planned. l.TP only needs
// Size and Rank.
func ParamShapes(cfg Config, l Layout) ([]ParamShape, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := l.validate(cfg); err != nil {
		return nil, fmt.Errorf("model layout: %w", err)
	}
	n := l.tp().Size()
	specs := paramSpecs(cfg, l)
	out := make([]ParamShape, len(specs))
	for i, s := range specs {
		local, err := s.shard.LocalShape(s.shape, n)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", s.name, err)
		}
		out[i] = ParamShape{Name: s.name, Shape: s.shape, Local: local, TiedCopy: s.tiedCopy}
	}
	return out, nil
}
