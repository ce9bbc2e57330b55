package model

import (
	"fmt"
	"sort"
	"strings"
)

// Activation selects the MLP nonlinearity.
const (
	GELUTanh = "gelu_new" // GPT-2's tanh approximation (HF name "gelu_new")
	GELUErf  = "gelu"     // exact GELU with erf
	SwiGLU   = "swiglu"   // SiLU(gate) * up, as in LLaMA
)

// Norm selects the normalization layer.
const (
	LayerNorm = "layernorm"
	RMSNorm   = "rmsnorm"
)

// Position selects how positions are encoded.
const (
	PosLearned = "learned" // absolute learned embedding wpe (GPT-2)
	PosRoPE    = "rope"    // rotary embedding of q and k (GPT-NeoX/LLaMA half-split pairs), no wpe
	PosALiBi   = "alibi"   // linear attention biases -slope_h*(i-j) (Press et al.), no wpe
)

// RoPE scaling types (Config.RopeScaling.Type), for running a RoPE model
// past the length it was trained on.
const (
	ScaleLinear = "linear" // position interpolation: positions / factor
	ScaleNTK    = "ntk"    // NTK-aware: base * factor^(d/(d-2))
	ScaleYaRN   = "yarn"   // per-frequency ramp + attention temperature 0.1*ln(factor)+1
	ScaleLlama3 = "llama3" // Llama 3.1: long wavelengths / factor, short kept, a smooth ramp between
)

// RopeScaling is config.json's "rope_scaling", as in Hugging Face:
// {"type": "yarn", "factor": 2, "original_max_position_embeddings": 64}.
// BetaFast and BetaSlow bound YaRN's ramp in rotations over the original
// length (0 means Hugging Face's defaults 32 and 1).
type RopeScaling struct {
	Type                          string  `json:"type"`
	Factor                        float64 `json:"factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
	BetaFast                      float64 `json:"beta_fast,omitempty"`
	BetaSlow                      float64 `json:"beta_slow,omitempty"`
	// Llama 3 only: wavelengths longer than original/LowFreqFactor are
	// interpolated, shorter than original/HighFreqFactor kept.
	LowFreqFactor  float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor float64 `json:"high_freq_factor,omitempty"`
}

// Config describes the architecture. Field names follow the Hugging Face
// GPT-2 config.json where one exists.
type Config struct {
	VocabSize    int     `json:"vocab_size"`
	NLayer       int     `json:"n_layer"`
	NHead        int     `json:"n_head"`
	NEmbd        int     `json:"n_embd"`
	NPositions   int     `json:"n_positions"`
	LayerNormEps float64 `json:"layer_norm_epsilon"`
	Activation   string  `json:"activation_function"`
	Norm         string  `json:"norm"`     // strand extension: layernorm | rmsnorm
	Position     string  `json:"position"` // strand extension: learned | rope | alibi
	MLPHidden    int     `json:"n_inner"`  // 0 means the default for the activation
	InitStd      float64 `json:"initializer_range"`
	// RoPE only: the base of the rotary frequencies (HF "rope_theta",
	// default 10000) and optional scaling for longer contexts.
	RopeTheta   float64      `json:"rope_theta,omitempty"`
	RopeScaling *RopeScaling `json:"rope_scaling,omitempty"`
	// Llama-family options; their zero values are GPT-2's.
	//   NKVHead: key/value heads of grouped-query attention (0: NHead;
	//     1: multi-query). Query head h uses kv head h/(NHead/NKVHead), as
	//     Hugging Face's repeat_kv does (see KVGroup for the stored order).
	//   NoBias: the linear layers have no biases (Llama, Mistral) ...
	//   QKVBias: ... except the q/k/v projections (Qwen2).
	//   UntiedHead: the LM head is its own lm_head.weight (V, C), not wte.
	NKVHead    int  `json:"n_kv_head,omitempty"`
	NoBias     bool `json:"no_bias,omitempty"`
	QKVBias    bool `json:"qkv_bias,omitempty"`
	UntiedHead bool `json:"untied_head,omitempty"`
	// SlidingWindow, when set (Mistral's sliding_window), is how many
	// previous positions a query may see. strand's attention is full
	// causal, which equals it only while sequences are no longer than the
	// window: longer ones are refused (NewSharded, NewKVCache).
	SlidingWindow int `json:"sliding_window,omitempty"`
}

// Preset returns a named model configuration. The presets are the models
// that ../shared/ANCHORS.md measured in PyTorch.
func Preset(name string) (Config, error) {
	base := Config{LayerNormEps: 1e-5, Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.02}
	switch name {
	case "tiny":
		base.NLayer, base.NEmbd, base.NHead, base.NPositions, base.VocabSize = 2, 128, 4, 64, 256
	case "small":
		base.NLayer, base.NEmbd, base.NHead, base.NPositions, base.VocabSize = 4, 256, 8, 128, 512
	case "gpt2s":
		base.NLayer, base.NEmbd, base.NHead, base.NPositions, base.VocabSize = 6, 384, 6, 256, 4096
	case "gpt2":
		base.NLayer, base.NEmbd, base.NHead, base.NPositions, base.VocabSize = 12, 768, 12, 1024, 50257
	case "llama-tiny":
		base = llama(base)
		base.NLayer, base.NEmbd, base.NHead, base.NKVHead, base.NPositions, base.VocabSize = 2, 128, 4, 2, 64, 256
	case "llama-small":
		base = llama(base)
		base.NLayer, base.NEmbd, base.NHead, base.NKVHead, base.NPositions, base.VocabSize = 4, 256, 8, 2, 128, 512
	case "llama-gpt2s":
		// gpt2s's width, depth and vocabulary as a Llama: 2 kv heads of 6
		base = llama(base)
		base.NLayer, base.NEmbd, base.NHead, base.NKVHead, base.NPositions, base.VocabSize = 6, 384, 6, 2, 256, 4096
	default:
		return Config{}, fmt.Errorf("unknown model preset %q (have %s)", name, strings.Join(PresetNames(), ", "))
	}
	return base, nil
}

// llama turns a preset base into a Llama-family decoder: RMSNorm, SwiGLU,
// RoPE (theta 10000), no biases, untied head. Sizes are set by the caller.
func llama(c Config) Config {
	c.Norm, c.Activation, c.Position = RMSNorm, SwiGLU, PosRoPE
	c.LayerNormEps = 1e-5
	c.NoBias, c.UntiedHead = true, true
	return c
}

// PresetNames lists the preset names in a stable order.
func PresetNames() []string {
	names := []string{"tiny", "small", "gpt2s", "gpt2", "llama-tiny", "llama-small", "llama-gpt2s"}
	sort.Strings(names)
	return names
}

// PresetBatch is the default per-step batch of each preset (tokens = batch*seq).
func PresetBatch(name string) int {
	switch name {
	case "tiny", "small", "llama-tiny", "llama-small":
		return 8
	case "gpt2s", "llama-gpt2s":
		return 4
	}
	return 1
}

// Hidden is the MLP hidden width: n_inner if set, 4*C for GELU, and about
// (8/3)*C rounded up to a multiple of 8 for SwiGLU (same parameter count).
func (c Config) Hidden() int {
	if c.MLPHidden > 0 {
		return c.MLPHidden
	}
	if c.Activation == SwiGLU {
		h := (8*c.NEmbd + 2) / 3
		return (h + 7) / 8 * 8
	}
	return 4 * c.NEmbd
}

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int { return c.NEmbd / c.NHead }

// KVHeads is the number of key/value heads (NHead unless grouped-query).
func (c Config) KVHeads() int {
	if c.NKVHead == 0 {
		return c.NHead
	}
	return c.NKVHead
}

// KVGroup is the number of query heads sharing one kv head.
//
// Stored order: strand keeps the query heads of the fused c_attn in
// "group-major" order, internal head i = g*KVHeads + k holding Hugging
// Face's head k*KVGroup + g (the g-th query head of kv head k). Then q is
// KVGroup equal chunks of KVHeads heads each, like k and v, so a
// tensor-parallel rank's share of every chunk (tensor.Split(1, KVGroup+2))
// is the query heads of exactly the kv heads it holds, and local query
// head h uses local kv head h % (kv heads held). With KVGroup 1 the order
// is Hugging Face's and GPT-2's.
func (c Config) KVGroup() int { return c.NHead / c.KVHeads() }

// KVDim is the width of the keys (and of the values): KVHeads*HeadDim.
func (c Config) KVDim() int { return c.KVHeads() * c.HeadDim() }

// HasBias reports whether the linear layer named by kind ("qkv", "proj",
// "fc", "fcproj") has a bias.
func (c Config) HasBias(kind string) bool {
	if !c.NoBias {
		return true
	}
	return kind == "qkv" && c.QKVBias
}

// Validate reports the first problem with the configuration, if any.
func (c Config) Validate() error {
	switch {
	case c.VocabSize <= 0:
		return fmt.Errorf("model config: vocab_size %d must be positive", c.VocabSize)
	case c.NLayer <= 0:
		return fmt.Errorf("model config: n_layer %d must be positive", c.NLayer)
	case c.NHead <= 0:
		return fmt.Errorf("model config: n_head %d must be positive", c.NHead)
	case c.NEmbd <= 0:
		return fmt.Errorf("model config: n_embd %d must be positive", c.NEmbd)
	case c.NEmbd%c.NHead != 0:
		return fmt.Errorf("model config: n_head %d does not divide n_embd %d", c.NHead, c.NEmbd)
	case c.NPositions <= 0:
		return fmt.Errorf("model config: n_positions %d must be positive", c.NPositions)
	case c.LayerNormEps <= 0:
		return fmt.Errorf("model config: layer_norm_epsilon %g must be positive", c.LayerNormEps)
	case c.MLPHidden < 0:
		return fmt.Errorf("model config: n_inner %d must not be negative", c.MLPHidden)
	case c.InitStd < 0:
		return fmt.Errorf("model config: initializer_range %g must not be negative", c.InitStd)
	case c.NKVHead < 0 || c.NKVHead > 0 && c.NHead%c.NKVHead != 0:
		return fmt.Errorf("model config: n_kv_head %d must divide n_head %d", c.NKVHead, c.NHead)
	case c.SlidingWindow < 0:
		return fmt.Errorf("model config: sliding_window %d must not be negative", c.SlidingWindow)
	case c.QKVBias && !c.NoBias:
		return fmt.Errorf("model config: qkv_bias only makes sense with no_bias (the q/k/v biases are the only ones kept)")
	}
	switch c.Activation {
	case GELUTanh, GELUErf, SwiGLU:
	default:
		return fmt.Errorf("model config: activation_function %q is not one of %s, %s, %s", c.Activation, GELUTanh, GELUErf, SwiGLU)
	}
	switch c.Norm {
	case LayerNorm, RMSNorm:
	default:
		return fmt.Errorf("model config: norm %q is not one of %s, %s", c.Norm, LayerNorm, RMSNorm)
	}
	switch c.Position {
	case PosLearned, PosALiBi:
	case PosRoPE:
		if c.HeadDim()%2 != 0 {
			return fmt.Errorf("model config: rope needs an even head width, have %d", c.HeadDim())
		}
	default:
		return fmt.Errorf("model config: position %q is not one of %s, %s, %s", c.Position, PosLearned, PosRoPE, PosALiBi)
	}
	if c.RopeTheta < 0 || (c.RopeTheta > 0 && c.RopeTheta <= 1) {
		return fmt.Errorf("model config: rope_theta %g must be greater than 1", c.RopeTheta)
	}
	if s := c.RopeScaling; s != nil {
		if c.Position != PosRoPE {
			return fmt.Errorf("model config: rope_scaling is set for a %s-position model", c.Position)
		}
		switch s.Type {
		case ScaleLinear, ScaleNTK, ScaleYaRN:
		case ScaleLlama3:
			if !(s.LowFreqFactor > 0 && s.HighFreqFactor > s.LowFreqFactor) || s.OriginalMaxPositionEmbeddings <= 0 {
				return fmt.Errorf("model config: llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings, have %g, %g, %d",
					s.LowFreqFactor, s.HighFreqFactor, s.OriginalMaxPositionEmbeddings)
			}
		default:
			return fmt.Errorf("model config: rope_scaling type %q is not one of %s, %s, %s, %s", s.Type, ScaleLinear, ScaleNTK, ScaleYaRN, ScaleLlama3)
		}
		if !(s.Factor >= 1) {
			return fmt.Errorf("model config: rope_scaling factor %g must be at least 1", s.Factor)
		}
		if s.OriginalMaxPositionEmbeddings < 0 || s.BetaFast < 0 || s.BetaSlow < 0 {
			return fmt.Errorf("model config: rope_scaling has a negative original length or beta")
		}
	}
	return nil
}

// RopeBase is rope_theta, or 10000 when unset.
func (c Config) RopeBase() float64 {
	if c.RopeTheta == 0 {
		return 10000
	}
	return c.RopeTheta
}

// Context is the number of positions the model is meant to run on: the
// trained n_positions, times the RoPE scaling factor when one is set.
// Learned positions can never go past n_positions; RoPE and ALiBi can (with
// degrading quality), which strand eval --by-position measures.
func (c Config) Context() int {
	if s := c.RopeScaling; s != nil && c.Position == PosRoPE {
		orig := s.OriginalMaxPositionEmbeddings
		if orig == 0 {
			orig = c.NPositions
		}
		return max(c.NPositions, int(float64(orig)*s.Factor))
	}
	return c.NPositions
}

// WithDefaults fills fields left empty by older or foreign config files
// (a Hugging Face GPT-2 config has no norm or position keys).
func (c Config) WithDefaults() Config {
	if c.Activation == "" {
		c.Activation = GELUTanh
	}
	if c.Norm == "" {
		c.Norm = LayerNorm
	}
	if c.Position == "" {
		c.Position = PosLearned
	}
	if c.LayerNormEps == 0 {
		c.LayerNormEps = 1e-5
	}
	if c.InitStd == 0 {
		c.InitStd = 0.02
	}
	return c
}
