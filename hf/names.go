package hf

import (
	"fmt"

	"github.com/strand-ml/strand/model"
)

// entry is one Hugging Face tensor and where it lives in strand: a part of
// the full logical tensor of parameter param. move copies between the two
// (toStrand: from the Hugging Face data into the strand tensor; else back).
type entry struct {
	name  string // Hugging Face name
	shape []int  // Hugging Face shape (linear weights [out, in])
	param string // strand parameter
	move  func(strand, hf []float32, toStrand bool)
}

// entries lists the tensors of cfg's Hugging Face checkpoint in the order
// transformers' state_dict has them.
func entries(cfg model.Config) []entry {
	C, H, V := cfg.NEmbd, cfg.Hidden(), cfg.VocabSize
	HS, NH, NKV, G := cfg.HeadDim(), cfg.NHead, cfg.KVHeads(), cfg.KVGroup()
	Cq, Ckv := NH*HS, NKV*HS
	W := Cq + 2*Ckv // c_attn's output width
	// qrow[i] is the Hugging Face row (q_proj output feature) of strand's
	// query feature i: strand head g*NKV+k is Hugging Face head k*G+g.
	qrow := make([]int, Cq)
	for g := range G {
		for k := range NKV {
			for d := range HS {
				qrow[(g*NKV+k)*HS+d] = (k*G+g)*HS + d
			}
		}
	}
	ident := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	copyAll := func(strand, hf []float32, to bool) {
		if to {
			copy(strand, hf)
		} else {
			copy(hf, strand)
		}
	}
	// columns: a Hugging Face linear weight (n, in) is strand columns
	// [off, off+n) of a (in, width) weight, strand column off+j holding
	// Hugging Face row rows[j].
	columns := func(in, width, off int, rows []int) func(strand, hf []float32, to bool) {
		return func(strand, hf []float32, to bool) {
			for c := range in {
				srow := strand[c*width+off : c*width+off+len(rows)]
				for j, r := range rows {
					if to {
						srow[j] = hf[r*in+c]
					} else {
						hf[r*in+c] = srow[j]
					}
				}
			}
		}
	}
	// bias: Hugging Face bias (n) is strand elements [off, off+n).
	bias := func(off int, rows []int) func(strand, hf []float32, to bool) {
		return func(strand, hf []float32, to bool) {
			for j, r := range rows {
				if to {
					strand[off+j] = hf[r]
				} else {
					hf[r] = strand[off+j]
				}
			}
		}
	}
	// transposed: a Hugging Face linear weight (out, n) is a strand (n,
	// out) weight, strand row j holding Hugging Face column cols[j].
	transposed := func(out int, cols []int) func(strand, hf []float32, to bool) {
		n := len(cols)
		return func(strand, hf []float32, to bool) {
			for j, cc := range cols {
				srow := strand[j*out : (j+1)*out]
				for o := range out {
					if to {
						srow[o] = hf[o*n+cc]
					} else {
						hf[o*n+cc] = srow[o]
					}
				}
			}
		}
	}
	out := []entry{{name: "model.embed_tokens.weight", shape: []int{V, C}, param: "wte.weight", move: copyAll}}
	for l := range cfg.NLayer {
		hp, sp := fmt.Sprintf("model.layers.%d.", l), fmt.Sprintf("h.%d.", l)
		attn := sp + "attn.c_attn."
		out = append(out,
			entry{hp + "input_layernorm.weight", []int{C}, sp + "ln_1.weight", copyAll},
			entry{hp + "self_attn.q_proj.weight", []int{Cq, C}, attn + "weight", columns(C, W, 0, qrow)},
			entry{hp + "self_attn.k_proj.weight", []int{Ckv, C}, attn + "weight", columns(C, W, Cq, ident(Ckv))},
			entry{hp + "self_attn.v_proj.weight", []int{Ckv, C}, attn + "weight", columns(C, W, Cq+Ckv, ident(Ckv))},
		)
		if cfg.HasBias("qkv") {
			out = append(out,
				entry{hp + "self_attn.q_proj.bias", []int{Cq}, attn + "bias", bias(0, qrow)},
				entry{hp + "self_attn.k_proj.bias", []int{Ckv}, attn + "bias", bias(Cq, ident(Ckv))},
				entry{hp + "self_attn.v_proj.bias", []int{Ckv}, attn + "bias", bias(Cq+Ckv, ident(Ckv))},
			)
		}
		out = append(out,
			entry{hp + "self_attn.o_proj.weight", []int{C, Cq}, sp + "attn.c_proj.weight", transposed(C, qrow)},
			entry{hp + "mlp.gate_proj.weight", []int{H, C}, sp + "mlp.c_fc.weight", columns(C, 2*H, 0, ident(H))},
			entry{hp + "mlp.up_proj.weight", []int{H, C}, sp + "mlp.c_fc.weight", columns(C, 2*H, H, ident(H))},
			entry{hp + "mlp.down_proj.weight", []int{C, H}, sp + "mlp.c_proj.weight", transposed(C, ident(H))},
			entry{hp + "post_attention_layernorm.weight", []int{C}, sp + "ln_2.weight", copyAll},
		)
	}
	out = append(out, entry{name: "model.norm.weight", shape: []int{C}, param: "ln_f.weight", move: copyAll})
	if cfg.UntiedHead {
		out = append(out, entry{name: "lm_head.weight", shape: []int{V, C}, param: "lm_head.weight", move: copyAll})
	}
	return out
}

// ignorable are tensors some Hugging Face files carry that are not
// parameters (rotary caches); a tied lm_head.weight is checked separately.
func ignorable(name string) bool {
	const suffix = "self_attn.rotary_emb.inv_freq"
	return len(name) >= len(suffix) && name[len(name)-len(suffix):] == suffix
}

// Names lists the Hugging Face tensor names of cfg's checkpoint.
func Names(cfg model.Config) []string {
	es := entries(cfg)
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.name
	}
	return out
}
