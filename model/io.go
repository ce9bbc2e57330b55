package model

import (
	"fmt"
	"strings"

	"github.com/strand-ml/strand/safetensors"
)

// Tensors returns every parameter (or, with grads, every gradient) as a
// float32 safetensors tensor named prefix+name in the Hugging Face layout.
func (ps *Params) Tensors(prefix string, grads bool) []safetensors.Tensor {
	if grads {
		return ps.TensorsOf(prefix, ps.Grad)
	}
	return ps.TensorsOf(prefix, ps.Data)
}

// TensorsOf cuts flat, a buffer laid out like the parameters (gradients,
// optimizer moments), into one named tensor per parameter. Sharded
// parameters give this rank's shard, with its local shape.
func (ps *Params) TensorsOf(prefix string, flat []float32) []safetensors.Tensor {
	out := make([]safetensors.Tensor, 0, len(ps.List))
	for _, p := range ps.List {
		out = append(out, safetensors.F32Tensor(prefix+p.Name, p.Local, flat[p.Offset:p.Offset+p.Size()]))
	}
	return out
}

// ignoredTensor reports tensors that Hugging Face GPT-2 files carry but that
// are not parameters: attention-mask buffers and the tied LM head (a model
// with an untied head has lm_head.weight as a parameter).
func ignoredTensor(name string) bool {
	return strings.HasSuffix(name, ".attn.bias") && !strings.Contains(name, "c_attn") ||
		strings.HasSuffix(name, ".attn.masked_bias") || name == "lm_head.weight"
}

// Load copies every parameter from f. It first checks that each parameter
// exists with a floating-point dtype and the expected shape, and that f has
// no unknown tensors, so a mismatched file changes nothing. Names may carry
// Hugging Face's "transformer." prefix. prefix selects a namespace inside f
// (for example "exp_avg." in an optimizer file).
func (ps *Params) Load(f *safetensors.File, prefix string) error {
	return ps.LoadInto(f, prefix, ps.Data)
}

// LoadInto is Load into dst, a buffer laid out like the parameters.
func (ps *Params) LoadInto(f *safetensors.File, prefix string, dst []float32) error {
	if len(dst) != len(ps.Data) {
		return fmt.Errorf("load %q: destination has %d elements, parameters %d", prefix, len(dst), len(ps.Data))
	}
	names := make(map[string]string) // parameter name -> name in file
	for _, n := range f.Names() {
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		bare := strings.TrimPrefix(strings.TrimPrefix(n, prefix), "transformer.")
		if _, ok := ps.byName[bare]; !ok && ignoredTensor(bare) {
			continue
		}
		if _, ok := ps.byName[bare]; !ok {
			if ps.partial {
				continue // another pipeline stage's parameter
			}
			return fmt.Errorf("tensor %q is not a parameter of this model", n)
		}
		names[bare] = n
	}
	for _, p := range ps.List {
		n, ok := names[p.Name]
		if !ok {
			return fmt.Errorf("tensor %q is missing", prefix+p.Name)
		}
		t, _ := f.Tensor(n)
		switch t.DType {
		case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
		default:
			return fmt.Errorf("tensor %q has dtype %s, want a float type", n, t.DType)
		}
		if !sameShape(t.Shape, p.Shape) {
			return fmt.Errorf("tensor %q has shape %v, want %v", n, t.Shape, p.Shape)
		}
	}
	for _, p := range ps.List {
		data, _, err := f.Float32(names[p.Name])
		if err != nil {
			return err
		}
		ps.SetFull(p, dst[p.Offset:p.Offset+p.Size()], data)
	}
	return nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
