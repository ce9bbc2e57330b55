package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/strand-ml/strand/model"
)

// The supported families: model_type -> the architecture class name.
var families = map[string]string{
	"llama":   "LlamaForCausalLM",
	"qwen2":   "Qwen2ForCausalLM",
	"mistral": "MistralForCausalLM",
}

// ModelTypes lists the supported model_type values.
func ModelTypes() []string {
	out := make([]string, 0, len(families))
	for k := range families {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func architectures() []string {
	out := make([]string, 0, len(families))
	for _, v := range families {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Meta is what config.json (and generation_config.json) say beyond the
// architecture: the family, the special tokens and the stored dtype.
type Meta struct {
	ModelType  string
	BOS        *int  // bos_token_id, if given
	EOS        []int // eos_token_id: one or several, generation_config.json first
	TorchDType string
}

// rawConfig is config.json as transformers writes it for these families.
type rawConfig struct {
	ModelType             string          `json:"model_type"`
	Architectures         []string        `json:"architectures"`
	VocabSize             int             `json:"vocab_size"`
	HiddenSize            int             `json:"hidden_size"`
	IntermediateSize      int             `json:"intermediate_size"`
	NumHiddenLayers       int             `json:"num_hidden_layers"`
	NumAttentionHeads     int             `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           map[string]any  `json:"rope_scaling"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	HiddenAct             string          `json:"hidden_act"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`
	SlidingWindow         *int            `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	PartialRotaryFactor   *float64        `json:"partial_rotary_factor"`
	InitializerRange      float64         `json:"initializer_range"`
	BOS                   *int            `json:"bos_token_id"`
	EOS                   json.RawMessage `json:"eos_token_id"`
	TorchDType            string          `json:"torch_dtype"`
}

// IsDir reports whether dir holds a config.json of a supported family
// (or of another model_type that is not GPT-2: ReadConfig then names it).
func IsDir(dir string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var head struct {
		ModelType string `json:"model_type"`
	}
	if json.Unmarshal(raw, &head) != nil {
		return false
	}
	return head.ModelType != "" && head.ModelType != "gpt2"
}

// ReadConfig reads dir/config.json (and generation_config.json for the
// eos ids) of a Llama-family directory.
func ReadConfig(dir string) (model.Config, Meta, error) {
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return model.Config{}, Meta{}, fmt.Errorf("hf config: %w", err)
	}
	cfg, meta, err := ParseConfig(raw)
	if err != nil {
		return model.Config{}, Meta{}, fmt.Errorf("hf config %s: %w", path, err)
	}
	gen := filepath.Join(dir, "generation_config.json")
	if raw, err := os.ReadFile(gen); err == nil {
		var g struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			return model.Config{}, Meta{}, fmt.Errorf("hf %s: %w", gen, err)
		}
		if ids, err := tokenIDs(g.EOS); err != nil {
			return model.Config{}, Meta{}, fmt.Errorf("hf %s: eos_token_id: %w", gen, err)
		} else if ids != nil {
			meta.EOS = ids
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return model.Config{}, Meta{}, fmt.Errorf("hf: %w", err)
	}
	return cfg, meta, nil
}

// tokenIDs decodes an id or a list of ids (null: none).
func tokenIDs(raw json.RawMessage) ([]int, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return nil, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("%s is neither an id nor a list of ids", s)
	}
	return many, nil
}

// ParseConfig turns a Llama-family config.json into strand's model
// configuration. Fields strand cannot honour are refused by name.
func ParseConfig(raw []byte) (model.Config, Meta, error) {
	var r rawConfig
	if err := json.Unmarshal(raw, &r); err != nil {
		return model.Config{}, Meta{}, err
	}
	arch, ok := families[r.ModelType]
	if !ok {
		return model.Config{}, Meta{}, fmt.Errorf("model_type %q is not supported (supported: %s; GPT-2 directories load as strand checkpoints)", r.ModelType, strings.Join(ModelTypes(), ", "))
	}
	for _, a := range r.Architectures {
		if a != arch {
			return model.Config{}, Meta{}, fmt.Errorf("architecture %q is not supported for model_type %q (supported: %s)", a, r.ModelType, strings.Join(architectures(), ", "))
		}
	}
	meta := Meta{ModelType: r.ModelType, BOS: r.BOS, TorchDType: r.TorchDType}
	var err error
	if meta.EOS, err = tokenIDs(r.EOS); err != nil {
		return model.Config{}, Meta{}, fmt.Errorf("eos_token_id: %w", err)
	}
	if r.HiddenAct != "" && r.HiddenAct != "silu" {
		return model.Config{}, Meta{}, fmt.Errorf("hidden_act %q is not supported (only silu)", r.HiddenAct)
	}
	if r.NumAttentionHeads <= 0 || r.HiddenSize <= 0 {
		return model.Config{}, Meta{}, fmt.Errorf("num_attention_heads %d and hidden_size %d must be positive", r.NumAttentionHeads, r.HiddenSize)
	}
	if r.HeadDim != nil && *r.HeadDim*r.NumAttentionHeads != r.HiddenSize {
		return model.Config{}, Meta{}, fmt.Errorf("head_dim %d is not supported: strand needs head_dim = hidden_size / num_attention_heads = %d", *r.HeadDim, r.HiddenSize/r.NumAttentionHeads)
	}
	if r.PartialRotaryFactor != nil && *r.PartialRotaryFactor != 1 {
		return model.Config{}, Meta{}, fmt.Errorf("partial_rotary_factor %g is not supported (only 1)", *r.PartialRotaryFactor)
	}
	if r.MLPBias != nil && *r.MLPBias {
		return model.Config{}, Meta{}, fmt.Errorf("mlp_bias true is not supported")
	}
	if r.AttentionBias != nil && *r.AttentionBias {
		return model.Config{}, Meta{}, fmt.Errorf("attention_bias true is not supported (an o_proj bias; Qwen2's q/k/v biases are)")
	}
	c := model.Config{
		VocabSize: r.VocabSize, NLayer: r.NumHiddenLayers, NHead: r.NumAttentionHeads, NEmbd: r.HiddenSize,
		NPositions: r.MaxPositionEmbeddings, LayerNormEps: 1e-6, Activation: model.SwiGLU, Norm: model.RMSNorm,
		Position: model.PosRoPE, MLPHidden: r.IntermediateSize, InitStd: r.InitializerRange,
		RopeTheta: 10000, NoBias: true, QKVBias: r.ModelType == "qwen2", UntiedHead: true,
	}
	if c.InitStd == 0 {
		c.InitStd = 0.02
	}
	if r.RMSNormEps != nil {
		c.LayerNormEps = *r.RMSNormEps
	}
	if r.RopeTheta != nil {
		c.RopeTheta = *r.RopeTheta
	}
	if r.NumKeyValueHeads != nil {
		c.NKVHead = *r.NumKeyValueHeads
	} else if r.ModelType == "mistral" {
		c.NKVHead = 8 // MistralConfig's default
	}
	if c.NKVHead == c.NHead {
		c.NKVHead = 0
	}
	if r.TieWordEmbeddings != nil {
		c.UntiedHead = !*r.TieWordEmbeddings
	}
	if r.IntermediateSize <= 0 {
		return model.Config{}, Meta{}, fmt.Errorf("intermediate_size %d must be positive", r.IntermediateSize)
	}
	switch r.ModelType {
	case "mistral":
		if r.SlidingWindow != nil {
			c.SlidingWindow = *r.SlidingWindow
		}
	case "qwen2":
		if r.UseSlidingWindow != nil && *r.UseSlidingWindow && r.SlidingWindow != nil {
			c.SlidingWindow = *r.SlidingWindow
		}
	}
	if c.RopeScaling, err = ropeScaling(r.RopeScaling); err != nil {
		return model.Config{}, Meta{}, err
	}
	if err := c.Validate(); err != nil {
		return model.Config{}, Meta{}, err
	}
	return c, meta, nil
}

// ropeScaling maps config.json's rope_scaling onto strand's. Keys strand
// does not implement are refused rather than ignored.
func ropeScaling(m map[string]any) (*model.RopeScaling, error) {
	if m == nil {
		return nil, nil
	}
	typ, _ := m["rope_type"].(string)
	if typ == "" {
		typ, _ = m["type"].(string)
	}
	if typ == "" || typ == "default" {
		return nil, nil
	}
	allowed := map[string][]string{
		model.ScaleLinear: {"factor"},
		model.ScaleYaRN:   {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow"},
		model.ScaleLlama3: {"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"},
	}
	keys, ok := allowed[typ]
	if !ok {
		return nil, fmt.Errorf("rope_scaling type %q is not supported (supported: linear, yarn, llama3)", typ)
	}
	s := &model.RopeScaling{Type: typ}
	num := func(k string) (float64, error) {
		v, ok := m[k]
		if !ok || v == nil {
			return 0, nil
		}
		f, ok := v.(float64)
		if !ok {
			return 0, fmt.Errorf("rope_scaling %s is %v, not a number", k, v)
		}
		return f, nil
	}
	for k := range m {
		if k == "type" || k == "rope_type" {
			continue
		}
		known := false
		for _, a := range keys {
			known = known || a == k
		}
		if !known {
			return nil, fmt.Errorf("rope_scaling field %q is not supported for type %q", k, typ)
		}
	}
	var err error
	var orig float64
	if s.Factor, err = num("factor"); err != nil {
		return nil, err
	}
	if orig, err = num("original_max_position_embeddings"); err != nil {
		return nil, err
	}
	s.OriginalMaxPositionEmbeddings = int(orig)
	if s.BetaFast, err = num("beta_fast"); err != nil {
		return nil, err
	}
	if s.BetaSlow, err = num("beta_slow"); err != nil {
		return nil, err
	}
	if s.LowFreqFactor, err = num("low_freq_factor"); err != nil {
		return nil, err
	}
	if s.HighFreqFactor, err = num("high_freq_factor"); err != nil {
		return nil, err
	}
	return s, nil
}

// ConfigJSON is config.json for cfg as model_type modelType, as
// transformers writes it. dtype is the stored torch_dtype ("float32" or
// "bfloat16").
func ConfigJSON(cfg model.Config, modelType, dtype string, meta Meta) (map[string]any, error) {
	arch, ok := families[modelType]
	if !ok {
		return nil, fmt.Errorf("model_type %q is not supported (supported: %s)", modelType, strings.Join(ModelTypes(), ", "))
	}
	if err := Exportable(cfg, modelType); err != nil {
		return nil, err
	}
	out := map[string]any{
		"architectures":           []string{arch},
		"model_type":              modelType,
		"vocab_size":              cfg.VocabSize,
		"hidden_size":             cfg.NEmbd,
		"intermediate_size":       cfg.Hidden(),
		"num_hidden_layers":       cfg.NLayer,
		"num_attention_heads":     cfg.NHead,
		"num_key_value_heads":     cfg.KVHeads(),
		"max_position_embeddings": cfg.NPositions,
		"rms_norm_eps":            cfg.LayerNormEps,
		"rope_theta":              cfg.RopeBase(),
		"tie_word_embeddings":     !cfg.UntiedHead,
		"hidden_act":              "silu",
		"initializer_range":       cfg.InitStd,
		"torch_dtype":             dtype,
		"use_cache":               true,
	}
	switch modelType {
	case "llama":
		out["attention_bias"], out["mlp_bias"] = false, false
	case "mistral":
		out["sliding_window"] = nil
		if cfg.SlidingWindow > 0 {
			out["sliding_window"] = cfg.SlidingWindow
		}
	case "qwen2":
		out["use_sliding_window"] = cfg.SlidingWindow > 0
		if cfg.SlidingWindow > 0 {
			out["sliding_window"] = cfg.SlidingWindow
			out["max_window_layers"] = cfg.NLayer
		}
	}
	if s := cfg.RopeScaling; s != nil {
		rs := map[string]any{"rope_type": s.Type, "factor": s.Factor}
		switch s.Type {
		case model.ScaleYaRN:
			if s.OriginalMaxPositionEmbeddings > 0 {
				rs["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings
			}
			if s.BetaFast > 0 {
				rs["beta_fast"] = s.BetaFast
			}
			if s.BetaSlow > 0 {
				rs["beta_slow"] = s.BetaSlow
			}
		case model.ScaleLlama3:
			rs["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings
			rs["low_freq_factor"], rs["high_freq_factor"] = s.LowFreqFactor, s.HighFreqFactor
		}
		out["rope_scaling"] = rs
	}
	if meta.BOS != nil {
		out["bos_token_id"] = *meta.BOS
	}
	switch len(meta.EOS) {
	case 0:
	case 1:
		out["eos_token_id"] = meta.EOS[0]
	default:
		out["eos_token_id"] = meta.EOS
	}
	return out, nil
}

// Exportable reports why cfg cannot be written as model_type modelType, if
// it cannot: the family needs RMSNorm, SwiGLU and RoPE, no biases but
// Qwen2's q/k/v ones, and a rope_scaling transformers knows.
func Exportable(cfg model.Config, modelType string) error {
	if cfg.Norm != model.RMSNorm || cfg.Activation != model.SwiGLU || cfg.Position != model.PosRoPE {
		return fmt.Errorf("export %s: the model (norm %s, activation %s, position %s) is not a Llama-family architecture (rmsnorm, swiglu, rope)", modelType, cfg.Norm, cfg.Activation, cfg.Position)
	}
	if !cfg.NoBias {
		return fmt.Errorf("export %s: the model's linear layers have biases (no_bias is false); the family has none", modelType)
	}
	if cfg.QKVBias != (modelType == "qwen2") {
		if cfg.QKVBias {
			return fmt.Errorf("export %s: the model has q/k/v biases: export it as qwen2", modelType)
		}
		return fmt.Errorf("export qwen2: the model has no q/k/v biases: export it as llama")
	}
	if s := cfg.RopeScaling; s != nil && s.Type == model.ScaleNTK {
		return fmt.Errorf("export %s: rope_scaling %q (static NTK-aware) has no transformers equivalent", modelType, s.Type)
	}
	if cfg.SlidingWindow > 0 && modelType == "llama" {
		return fmt.Errorf("export llama: the model has a sliding window of %d; export it as mistral", cfg.SlidingWindow)
	}
	return nil
}
