#!/usr/bin/env python3
"""Writes PyTorch reference fixtures for the position encodings in model/.

An independent small GPT in PyTorch (float64 from float32 weights), with
  pos_rope   RoPE (GPT-NeoX/HF LLaMA rotate_half pairs i, i+HS/2), base 10000
  pos_yarn   RoPE with YaRN scaling (factor 4 over an original 8 positions,
             run at 16 positions), frequencies and attention factor as in
             Hugging Face transformers' _compute_yarn_parameters
  pos_ntk    RoPE with NTK-aware base scaling (factor 2)
  pos_linear RoPE with linear position interpolation (factor 2)
  pos_alibi  ALiBi with 6 heads (a non-power-of-two head count), slopes as
             in the paper's reference get_slopes
Each directory: model.safetensors, config.json (strand keys),
reference.safetensors (tokens, targets, loss, grad.<name>, logits).

Run: /usr/bin/python3 model/testdata/gen_pos_fixtures.py
"""
import json, math, os, sys
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import write_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
L, V, B, T = 2, 64, 2, 16


def get_slopes(n):
    def pow2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return pow2(n)
    c = 2 ** math.floor(math.log2(n))
    return pow2(c) + get_slopes(2 * c)[0::2][: n - c]


def rope_tables(hs, base, scaling, npos):
    """cos, sin (T, hs) as HF computes them (float64 here)."""
    inv = 1.0 / (base ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    mscale = 1.0
    if scaling:
        kind, factor, orig = scaling["type"], scaling["factor"], scaling.get("original_max_position_embeddings", npos)
        if kind == "linear":
            inv = inv / factor
        elif kind == "ntk":
            base = base * factor ** (hs / (hs - 2))
            inv = 1.0 / (base ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
        elif kind == "yarn":
            beta_fast, beta_slow = 32, 1
            def corr(rot):
                return (hs * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))
            low = max(math.floor(corr(beta_fast)), 0)
            high = min(math.ceil(corr(beta_slow)), hs - 1)
            if low == high:
                high += 0.001
            ramp = ((torch.arange(hs // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
            extrap = 1 - ramp
            inv = (inv / factor) * (1 - extrap) + inv * extrap
            mscale = 0.1 * math.log(factor) + 1.0
    t = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(t, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * mscale, emb.sin() * mscale


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(p, tokens, targets, C, NH, pos, scaling):
    F = torch.nn.functional
    HS = C // NH
    x = p["wte.weight"][tokens]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    bias = torch.zeros(NH, T, T, dtype=torch.float64)
    if pos == "alibi":
        s = torch.tensor(get_slopes(NH), dtype=torch.float64)
        i = torch.arange(T)
        bias = -s[:, None, None] * (i[:, None] - i[None, :]).double()
    if pos == "rope":
        cos, sin = rope_tables(HS, 10000.0, scaling, T)
    for l in range(L):
        h = f"h.{l}."
        a = F.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], 1e-5)
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
        if pos == "rope":
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS) + bias
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        a = F.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], 1e-5)
        f = F.gelu(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + f @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    logits = x @ p["wte.weight"].t()
    return F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-100), logits


def init_params(gen, C):
    p = {}
    n = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float32) * 0.2
    p["wte.weight"] = n(V, C)
    for l in range(L):
        h = f"h.{l}."
        p[h + "ln_1.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        p[h + "ln_1.bias"] = 0.1 * torch.randn(C, generator=gen)
        p[h + "attn.c_attn.weight"] = n(C, 3 * C)
        p[h + "attn.c_attn.bias"] = 0.05 * torch.randn(3 * C, generator=gen)
        p[h + "attn.c_proj.weight"] = n(C, C)
        p[h + "attn.c_proj.bias"] = 0.05 * torch.randn(C, generator=gen)
        p[h + "ln_2.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        p[h + "ln_2.bias"] = 0.1 * torch.randn(C, generator=gen)
        p[h + "mlp.c_fc.weight"] = n(C, 4 * C)
        p[h + "mlp.c_fc.bias"] = 0.05 * torch.randn(4 * C, generator=gen)
        p[h + "mlp.c_proj.weight"] = n(4 * C, C)
        p[h + "mlp.c_proj.bias"] = 0.05 * torch.randn(C, generator=gen)
    p["ln_f.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
    p["ln_f.bias"] = 0.1 * torch.randn(C, generator=gen)
    return p


CASES = [
    # name, C, NH, position, rope_scaling, n_positions
    ("pos_rope", 32, 4, "rope", None, 16),
    ("pos_yarn", 32, 2, "rope", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}, 8),
    ("pos_ntk", 32, 4, "rope", {"type": "ntk", "factor": 2.0}, 8),
    ("pos_linear", 32, 4, "rope", {"type": "linear", "factor": 2.0}, 8),
    ("pos_alibi", 48, 6, "alibi", None, 16),
]


def main():
    for name, C, NH, pos, scaling, npos in CASES:
        gen = torch.Generator().manual_seed(4321)
        p32 = init_params(gen, C)
        tokens = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
        targets = torch.roll(tokens, -1, dims=1)
        targets[:, -1] = torch.randint(0, V, (B,), generator=gen)
        targets[1, 5] = -100
        params = {k: v.double().clone().requires_grad_(True) for k, v in p32.items()}
        loss, logits = forward(params, tokens, targets, C, NH, pos, scaling)
        loss.backward()
        ref = {"tokens": tokens.int(), "targets": targets.int(), "loss": loss.detach().float().reshape(1),
               "logits": logits.detach().float()}
        for k, v in params.items():
            ref["grad." + k] = v.grad.float()
        out = os.path.join(HERE, name)
        os.makedirs(out, exist_ok=True)
        write_safetensors(os.path.join(out, "model.safetensors"), p32)
        write_safetensors(os.path.join(out, "reference.safetensors"), ref)
        cfg = {"vocab_size": V, "n_layer": L, "n_head": NH, "n_embd": C, "n_positions": npos,
               "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "norm": "layernorm",
               "position": pos, "initializer_range": 0.02}
        if pos == "rope":
            cfg["rope_theta"] = 10000.0
        if scaling:
            cfg["rope_scaling"] = scaling
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        print(f"{out}: loss {loss.item():.6f}")


if __name__ == "__main__":
    sys.exit(main())
