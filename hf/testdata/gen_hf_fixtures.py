#!/usr/bin/env python3
"""The PyTorch oracle for strand's Llama-family support (package hf).

transformers is not installable here, so this is an independent
implementation of the Hugging Face modeling equations of LlamaForCausalLM
and Qwen2ForCausalLM (modeling_llama.py / modeling_qwen2.py), computed in
float64 from the stored weights:

  RMSNorm       y = w * x / sqrt(mean(x^2) + eps)
  RoPE          q' = q*cos + rotate_half(q)*sin, rotate_half(x) = cat(-x2, x1),
                inv_freq = theta^(-2i/d), with "llama3" rope_scaling
                (_compute_llama3_parameters)
  attention     grouped-query: kv head j serves query heads j*G .. j*G+G-1
                (repeat_kv), causal softmax(q k^T / sqrt(d)) v, o_proj
  MLP           down_proj(silu(gate_proj(x)) * up_proj(x))
  head          lm_head, or embed_tokens when tie_word_embeddings
  loss          mean cross-entropy over targets != -100

It writes two fixture directories in the Hugging Face layout, with odd sizes:

  llama/  GQA (6 query heads, 2 kv heads), untied lm_head, llama3 rope
          scaling, bfloat16 weights in 3 shards + model.safetensors.index.json,
          eos ids [65, 66] in generation_config.json
  qwen2/  q/k/v biases, tied embeddings, 6 heads over 3 kv heads, float16
          weights in one model.safetensors

and in each reference.safetensors: tokens, targets (int32, B x T), loss,
grad.<hf name> for every tensor (float32 of the float64 gradient), and
greedy (prompt of 5 tokens of row 0 followed by 8 greedy tokens; the script
checks every step's top-2 margin so float32 cannot flip one).

  /usr/bin/python3 hf/testdata/gen_hf_fixtures.py            write the fixtures
  /usr/bin/python3 hf/testdata/gen_hf_fixtures.py --loss DIR REF [ADAPTER]
        print {"loss": ...} of the Hugging Face directory DIR (any dtype,
        sharded or not) on REF's tokens and targets (used by strand's tests
        to check that an exported checkpoint reloads with the same loss);
        with ADAPTER, a PEFT LoRA directory (adapter_config.json +
        adapter_model.safetensors) merged first as PEFT does:
        W += lora_alpha / r * lora_B @ lora_A
"""
import json, math, os, struct, sys
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_default_dtype(torch.float64)

DT = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2), "I32": (torch.int32, 4), "F64": (torch.float64, 8)}


def write_safetensors(path, tensors, order=None):
    header, blobs, off = {}, [], 0
    for name in order or sorted(tensors):
        t = tensors[name].contiguous()
        code = {torch.float32: "F32", torch.int32: "I32", torch.float16: "F16", torch.bfloat16: "BF16"}[t.dtype]
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt, _ = DT[e["dtype"]]
        a, b = e["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        if dt == torch.bfloat16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(buf, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out


def read_dir(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    idx = os.path.join(d, "model.safetensors.index.json")
    w = {}
    if os.path.exists(idx):
        for f in sorted(set(json.load(open(idx))["weight_map"].values())):
            w.update(read_safetensors(os.path.join(d, f)))
    else:
        w = read_safetensors(os.path.join(d, "model.safetensors"))
    return cfg, {k: v.to(torch.float64) for k, v in w.items()}


def inv_freq(cfg):
    d = cfg["hidden_size"] // cfg["num_attention_heads"]
    theta = cfg.get("rope_theta", 10000.0)
    f = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).to(torch.float64) / d))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wave, high_wave = old / lo, old / hi
        wave = 2 * math.pi / f
        g = torch.where(wave > low_wave, f / factor, f)
        smooth = (old / wave - lo) / (hi - lo)
        smoothed = (1 - smooth) * g / factor + smooth * g
        medium = ~(wave < high_wave) * ~(wave > low_wave)
        f = torch.where(medium, smoothed, g)
    elif rs:
        raise SystemExit("rope_scaling %r not implemented in the oracle" % rs)
    return f


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms(x, w, eps):
    return w * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def forward(cfg, p, tokens):
    """Logits (B, T, V) of the HF equations."""
    F = torch.nn.functional
    B, T = tokens.shape
    C, NH = cfg["hidden_size"], cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    d, G, eps = C // NH, NH // NKV, cfg.get("rms_norm_eps", 1e-6)
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq(cfg))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    x = p["model.embed_tokens.weight"][tokens.long()]
    for l in range(cfg["num_hidden_layers"]):
        h = f"model.layers.{l}."
        a = rms(x, p[h + "input_layernorm.weight"], eps)
        lin = lambda n, inp: F.linear(inp, p[h + n + ".weight"], p.get(h + n + ".bias"))
        q = lin("self_attn.q_proj", a).view(B, T, NH, d).transpose(1, 2)
        k = lin("self_attn.k_proj", a).view(B, T, NKV, d).transpose(1, 2)
        v = lin("self_attn.v_proj", a).view(B, T, NKV, d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)  # repeat_kv
        s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        s = s.masked_fill(~mask, float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(o, p[h + "self_attn.o_proj.weight"])
        a = rms(x, p[h + "post_attention_layernorm.weight"], eps)
        m = F.silu(F.linear(a, p[h + "mlp.gate_proj.weight"])) * F.linear(a, p[h + "mlp.up_proj.weight"])
        x = x + F.linear(m, p[h + "mlp.down_proj.weight"])
    x = rms(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else p["lm_head.weight"]
    return x @ head.T


def loss_of(cfg, p, tokens, targets):
    logits = forward(cfg, p, tokens)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=-100)


def make(name, cfg, std, dtype, shards, gen_cfg=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    C, NH, H, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    NKV = cfg["num_key_value_heads"]
    d = C // NH
    qkv_bias = cfg["model_type"] == "qwen2"
    p, order = {}, []

    def add(n, *shape, s=std, ones=False):
        t = torch.randn(*shape, generator=g, dtype=torch.float32) * s
        if ones:
            t = 1 + 0.2 * torch.randn(*shape, generator=g, dtype=torch.float32)
        p[n] = t.to(dtype)  # stored precision; the oracle computes from it
        order.append(n)

    add("model.embed_tokens.weight", V, C, s=1.0)
    for l in range(cfg["num_hidden_layers"]):
        h = f"model.layers.{l}."
        add(h + "input_layernorm.weight", C, ones=True)
        add(h + "self_attn.q_proj.weight", NH * d, C)
        add(h + "self_attn.k_proj.weight", NKV * d, C)
        add(h + "self_attn.v_proj.weight", NKV * d, C)
        if qkv_bias:
            add(h + "self_attn.q_proj.bias", NH * d, s=0.1)
            add(h + "self_attn.k_proj.bias", NKV * d, s=0.1)
            add(h + "self_attn.v_proj.bias", NKV * d, s=0.1)
        add(h + "self_attn.o_proj.weight", C, NH * d)
        add(h + "post_attention_layernorm.weight", C, ones=True)
        add(h + "mlp.gate_proj.weight", H, C)
        add(h + "mlp.up_proj.weight", H, C)
        add(h + "mlp.down_proj.weight", C, H)
    add("model.norm.weight", C, ones=True)
    if not cfg["tie_word_embeddings"]:
        add("lm_head.weight", V, C, s=0.5)

    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    if gen_cfg:
        json.dump(gen_cfg, open(os.path.join(out, "generation_config.json"), "w"), indent=2)
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), p, order)
    else:
        # split the state_dict order into `shards` runs
        per = math.ceil(len(order) / shards)
        wm, total = {}, 0
        for i in range(shards):
            names = order[i * per:(i + 1) * per]
            fn = "model-%05d-of-%05d.safetensors" % (i + 1, shards)
            write_safetensors(os.path.join(out, fn), {n: p[n] for n in names}, names)
            for n in names:
                wm[n] = fn
                total += p[n].numel() * p[n].element_size()
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2)

    B, T = 2, 12
    tokens = torch.randint(0, V, (B, T), generator=g, dtype=torch.int32)
    targets = torch.randint(0, V, (B, T), generator=g, dtype=torch.int32)
    targets[0, 3] = -100
    targets[1, 7] = -100
    w = {k: v.to(torch.float64).requires_grad_(True) for k, v in p.items()}
    loss = loss_of(cfg, w, tokens, targets)
    loss.backward()
    ref = {"tokens": tokens, "targets": targets, "loss": loss.detach().to(torch.float32).reshape(1)}
    for k, v in w.items():
        ref["grad." + k] = v.grad.to(torch.float32)
    # greedy continuation of row 0's first 5 tokens (full recompute)
    seq = tokens[0, :5].tolist()
    with torch.no_grad():
        pw = {k: v.detach() for k, v in w.items()}
        for _ in range(8):
            logits = forward(cfg, pw, torch.tensor([seq]))[0, -1]
            top = logits.topk(2).values
            if top[0] - top[1] < 1e-3:
                raise SystemExit("%s: greedy margin %.2g too small for a float32 comparison; change the seed" % (name, top[0] - top[1]))
            seq.append(int(logits.argmax()))
    ref["greedy"] = torch.tensor(seq, dtype=torch.int32)
    write_safetensors(os.path.join(out, "reference.safetensors"), ref)
    print("%s: loss %.6f greedy %s" % (name, loss.item(), seq))


def merge_peft(p, d):
    ac = json.load(open(os.path.join(d, "adapter_config.json")))
    assert ac["peft_type"] == "LORA" and not ac.get("fan_in_fan_out"), ac
    scale = ac["lora_alpha"] / ac["r"]
    ad = {k: v.to(torch.float64) for k, v in read_safetensors(os.path.join(d, "adapter_model.safetensors")).items()}
    prefix = "base_model.model."
    n = 0
    for name, a in ad.items():
        if not name.endswith(".lora_A.weight"):
            continue
        mod = name[len(prefix):-len(".lora_A.weight")]
        assert mod.split(".")[-1] in ac["target_modules"], mod
        b = ad[name.replace("lora_A", "lora_B")]
        p[mod + ".weight"] = p[mod + ".weight"] + scale * (b @ a)
        n += 1
    assert n > 0, "no adapters"


def main():
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--loss":
        cfg, p = read_dir(sys.argv[2])
        ref = read_safetensors(sys.argv[3])
        if len(sys.argv) == 5:
            merge_peft(p, sys.argv[4])
        with torch.no_grad():
            loss = loss_of(cfg, p, ref["tokens"].long(), ref["targets"])
        print(json.dumps({"loss": loss.item()}))
        return
    llama = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 67, "hidden_size": 48, "intermediate_size": 76, "num_hidden_layers": 2,
        "num_attention_heads": 6, "num_key_value_heads": 2, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 1, "eos_token_id": 66, "torch_dtype": "bfloat16",
    }
    make("llama", llama, 0.15, torch.bfloat16, 3, gen_cfg={"bos_token_id": 1, "eos_token_id": [65, 66]}, seed=1)
    qwen2 = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 53, "hidden_size": 36, "intermediate_size": 60, "num_hidden_layers": 2,
        "num_attention_heads": 6, "num_key_value_heads": 3, "max_position_embeddings": 32,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True, "hidden_act": "silu",
        "use_sliding_window": False, "sliding_window": 32, "max_window_layers": 2,
        "bos_token_id": 50, "eos_token_id": 52, "torch_dtype": "float16",
    }
    make("qwen2", qwen2, 0.2, torch.float16, 1, seed=2)


if __name__ == "__main__":
    main()
