package hf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/safetensors"
)

// PEFT's file names for a LoRA adapter.
const (
	AdapterConfigFile = "adapter_config.json"
	AdapterFile       = "adapter_model.safetensors"
)

// peftPiece is one PEFT module's adapter cut from a strand adapter:
// lora_A (r, in) is strand's A (in, r) transposed, with A's rows reordered
// by aRows (nil: in order); lora_B (out, r) is strand's B (r, W) columns
// bCols (strand column j -> Hugging Face row bRows[j]) transposed.
type peftPiece struct {
	module string // e.g. "self_attn.q_proj"
	aRows  []int  // Hugging Face input feature of strand A row i (nil: i)
	bLo    int    // first strand column of B
	bRows  []int  // Hugging Face output row of strand B column bLo+j
}

// peftPieces maps a strand LoRA target to its parameter prefix and the
// PEFT modules it stands for (a fused c_attn adapter is a q_proj, k_proj
// and v_proj adapter sharing A, exactly).
func peftPieces(cfg model.Config, target string) (prefix string, pieces []peftPiece, err error) {
	HS, NKV, G := cfg.HeadDim(), cfg.KVHeads(), cfg.KVGroup()
	Cq, Ckv, H := cfg.NHead*HS, NKV*HS, cfg.Hidden()
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
	q := peftPiece{module: "self_attn.q_proj", bRows: qrow}
	k := peftPiece{module: "self_attn.k_proj", bRows: ident(Ckv)}
	v := peftPiece{module: "self_attn.v_proj", bRows: ident(Ckv)}
	gate := peftPiece{module: "mlp.gate_proj", bRows: ident(H)}
	up := peftPiece{module: "mlp.up_proj", bRows: ident(H)}
	switch target {
	case "attn.c_attn":
		k.bLo, v.bLo = Cq, Cq+Ckv
		return "attn.c_attn", []peftPiece{q, k, v}, nil
	case "q_proj", "attn.q_proj":
		return "attn.q_proj", []peftPiece{q}, nil
	case "k_proj", "attn.k_proj":
		return "attn.k_proj", []peftPiece{k}, nil
	case "v_proj", "attn.v_proj":
		return "attn.v_proj", []peftPiece{v}, nil
	case "o_proj", "attn.c_proj":
		return "attn.c_proj", []peftPiece{{module: "self_attn.o_proj", aRows: qrow, bRows: ident(cfg.NEmbd)}}, nil
	case "mlp.c_fc":
		up.bLo = H
		return "mlp.c_fc", []peftPiece{gate, up}, nil
	case "gate_proj", "mlp.gate_proj":
		return "mlp.gate_proj", []peftPiece{gate}, nil
	case "up_proj", "mlp.up_proj":
		return "mlp.up_proj", []peftPiece{up}, nil
	case "down_proj", "mlp.c_proj":
		return "mlp.c_proj", []peftPiece{{module: "mlp.down_proj", bRows: ident(cfg.NEmbd)}}, nil
	}
	return "", nil, fmt.Errorf("lora target %q has no PEFT module", target)
}

// ExportAdapters writes m's LoRA adapters in PEFT's layout into dir:
// adapter_config.json (peft_type LORA, r, lora_alpha, target_modules by
// Hugging Face module name, base_model_name_or_path = base) and
// adapter_model.safetensors with PEFT's tensor names
// (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight (r, in)
// and .lora_B.weight (out, r)). m must hold the whole model (one process)
// with LoRA enabled, and be a Llama-family model (exportable as one).
func ExportAdapters(dir string, m *model.GPT, base string) error {
	lo := m.LoRA
	if lo == nil {
		return fmt.Errorf("peft export: the model has no LoRA adapters")
	}
	cfg := m.Config
	if err := Exportable(cfg, DefaultModelType(cfg)); err != nil {
		return fmt.Errorf("peft export: %w", err)
	}
	r := lo.Config.Rank
	modules := map[string]bool{}
	var tensors []safetensors.Tensor
	for l := range cfg.NLayer {
		for _, t := range lo.Config.Targets {
			prefix, pieces, err := peftPieces(cfg, t)
			if err != nil {
				return fmt.Errorf("peft export: %w", err)
			}
			pa, okA := m.Params.Lookup(fmt.Sprintf("h.%d.%s.lora_A", l, prefix))
			pb, okB := m.Params.Lookup(fmt.Sprintf("h.%d.%s.lora_B", l, prefix))
			if !okA || !okB || len(pa.Data) != pa.Shape[0]*r || len(pb.Data) != r*pb.Shape[1] {
				return fmt.Errorf("peft export: adapter h.%d.%s is not held whole here (export needs the whole model in one process)", l, prefix)
			}
			in, W := pa.Shape[0], pb.Shape[1]
			for _, pc := range pieces {
				a := make([]float32, r*in) // (r, in)
				for i := range in {
					hi := i
					if pc.aRows != nil {
						hi = pc.aRows[i]
					}
					for j := range r {
						a[j*in+hi] = pa.Data[i*r+j]
					}
				}
				out := len(pc.bRows)
				b := make([]float32, out*r) // (out, r)
				for j, hr := range pc.bRows {
					for k := range r {
						b[hr*r+k] = pb.Data[k*W+pc.bLo+j]
					}
				}
				name := fmt.Sprintf("base_model.model.model.layers.%d.%s.", l, pc.module)
				tensors = append(tensors,
					safetensors.F32Tensor(name+"lora_A.weight", []int{r, in}, a),
					safetensors.F32Tensor(name+"lora_B.weight", []int{out, r}, b))
				modules[pc.module[strings.LastIndex(pc.module, ".")+1:]] = true
			}
		}
	}
	var names []string
	for n := range modules {
		names = append(names, n)
	}
	sort.Strings(names)
	cfgJSON := map[string]any{
		"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": lo.Config.Alpha,
		"lora_dropout": 0.0, "target_modules": names, "bias": "none", "fan_in_fan_out": false,
		"base_model_name_or_path": base, "inference_mode": true, "modules_to_save": nil, "use_rslora": false,
		"init_lora_weights": true,
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("peft export: %w", err)
	}
	if err := safetensors.Write(filepath.Join(dir, AdapterFile), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("peft export: %w", err)
	}
	return writeJSON(filepath.Join(dir, AdapterConfigFile), cfgJSON)
}
