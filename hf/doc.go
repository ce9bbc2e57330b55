// Package hf reads and writes Hugging Face model directories of the
// Llama family (model_type "llama", "qwen2", "mistral"):
//
//	DIR/config.json                          architecture (transformers' keys)
//	DIR/generation_config.json               optional: eos_token_id, bos_token_id
//	DIR/model.safetensors                    one file, or
//	DIR/model-00001-of-00003.safetensors ... shards listed by
//	DIR/model.safetensors.index.json         {"weight_map": {tensor: file}}
//
// A family is a config and a name map, not a second model (see
// ../docs/ARCHITECTURE.md): ParseConfig turns config.json into a
// model.Config (grouped-query heads, RMSNorm, SwiGLU, RoPE with rope_theta
// and rope_scaling, which biases exist, tied or untied head), and the name
// map (names.go) says where each Hugging Face tensor lives in strand's
// parameters:
//
//	model.embed_tokens.weight                 (V, C)      wte.weight
//	model.layers.N.input_layernorm.weight     (C)         h.N.ln_1.weight
//	model.layers.N.self_attn.q_proj.weight    (Cq, C)     h.N.attn.c_attn.weight columns [0, Cq), transposed, heads reordered
//	model.layers.N.self_attn.k_proj.weight    (Ckv, C)    ... columns [Cq, Cq+Ckv)
//	model.layers.N.self_attn.v_proj.weight    (Ckv, C)    ... columns [Cq+Ckv, Cq+2Ckv)
//	model.layers.N.self_attn.{q,k,v}_proj.bias            h.N.attn.c_attn.bias (Qwen2)
//	model.layers.N.self_attn.o_proj.weight    (C, Cq)     h.N.attn.c_proj.weight (Cq, C), rows reordered
//	model.layers.N.post_attention_layernorm.weight        h.N.ln_2.weight
//	model.layers.N.mlp.gate_proj.weight       (H, C)      h.N.mlp.c_fc.weight columns [0, H)
//	model.layers.N.mlp.up_proj.weight         (H, C)      ... columns [H, 2H)
//	model.layers.N.mlp.down_proj.weight       (C, H)      h.N.mlp.c_proj.weight (H, C)
//	model.norm.weight                         (C)         ln_f.weight
//	lm_head.weight                            (V, C)      lm_head.weight (untied only)
//
// strand stores linear weights [in, out] and fuses q|k|v and gate|up, so
// loading transposes and places; query heads are kept in strand's
// group-major order (model.Config.KVGroup) so tensor parallelism can split
// kv heads. Load streams: it reads one tensor at a time from the shard
// files (safetensors.Reader) straight into this rank's parameters, so peak
// memory is the parameters plus one tensor (plus, with tensor parallelism,
// the full fused tensor being assembled). Export writes the same layout
// back, in float32 or bfloat16, sharded with an index above a size limit.
//
// Bad input is one error naming the problem: an unknown model_type or
// architecture (listing the supported ones), a missing or extra tensor, a
// shape mismatch (tensor, expected, got), an unsupported config value, a
// shard named by the index but absent.
package hf
