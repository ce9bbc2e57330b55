#!/usr/bin/env python3
"""Loads a Hugging Face GPT-2 model directory (config.json + model.safetensors,
as `strand ckpt export --format hf-gpt2` writes it) into an independent PyTorch
GPT-2 and prints the mean next-token loss over an llm.c token shard, read as
`strand eval --batch B --seq T --steps N` reads it.

Usage: hf_loss.py MODEL_DIR SHARD.bin B T N        (Debian python3-torch)
"""
import json, math, os, struct, sys
import torch

DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=DT[h["dtype"]]).reshape(h["shape"])
        out[name.removeprefix("transformer.")] = t.double()
    return out


def read_shard(path):
    with open(path, "rb") as f:
        head = struct.unpack("<256i", f.read(1024))
        assert head[0] == 20240520 and head[1] == 1, "not an llm.c shard"
        return torch.frombuffer(bytearray(f.read(2 * head[2])), dtype=torch.int16).to(torch.int64) & 0xFFFF


def loss(p, cfg, tokens, targets):
    F = torch.nn.functional
    L, C, NH = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    gelu = "tanh" if cfg.get("activation_function", "gelu_new") == "gelu_new" else "none"
    B, T = tokens.shape
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        h = f"h.{l}."
        a = F.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
        q, k, v = (a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(C // NH)).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, C) @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        a = F.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
        f = F.gelu(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"], approximate=gelu)
        x = x + f @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], eps)
    logits = x @ p.get("lm_head.weight", p["wte.weight"]).t()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum").item()


def main():
    d, shard, B, T, N = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    cfg = json.load(open(os.path.join(d, "config.json")))
    p = read_safetensors(os.path.join(d, "model.safetensors"))
    stream = read_shard(shard)
    total = 0.0
    with torch.no_grad():
        for i in range(N):
            chunk = stream[i * B * T: (i + 1) * B * T + 1]
            total += loss(p, cfg, chunk[:-1].view(B, T), chunk[1:].view(B, T))
    print(json.dumps({"loss": total / (N * B * T)}))


if __name__ == "__main__":
    main()
