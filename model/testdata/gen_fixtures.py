#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures that model/ tests compare against.

An independent GPT-2 written directly in PyTorch (no strand code), computed
in float64 from float32 weights, for the `tiny` preset shape with a small
batch. For each GELU variant it writes a directory:

  model.safetensors  weights in the Hugging Face GPT-2 layout (Conv1D [in, out])
  config.json        Hugging Face GPT-2 config keys
  reference.safetensors
      tokens, targets (int32, B x T; some targets are -100 = ignored)
      loss (scalar), grad.<name> for every parameter,
      step_losses (loss before each of 3 AdamW steps and after the last),
      step3.<name> parameters after 3 AdamW steps (with global-norm clipping)

Run: /usr/bin/python3 model/testdata/gen_fixtures.py   (Debian python3-torch)
"""
import json, math, os, struct, sys
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
L, C, NH, NPOS, V = 2, 128, 4, 64, 256
B, T = 2, 32
LR, BETAS, EPS, WD, CLIP = 1e-3, (0.9, 0.95), 1e-8, 0.1, 1.0


def write_safetensors(path, tensors):
    """Minimal safetensors writer (the format is a JSON header + raw bytes)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dt = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def init_params(gen):
    p = {}
    n = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float32) * 0.02
    proj = 0.02 / math.sqrt(2 * L)
    p["wte.weight"] = n(V, C)
    p["wpe.weight"] = n(NPOS, C)
    for l in range(L):
        h = f"h.{l}."
        # non-trivial norm weights and biases so their gradients are exercised
        p[h + "ln_1.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        p[h + "ln_1.bias"] = 0.1 * torch.randn(C, generator=gen)
        p[h + "attn.c_attn.weight"] = n(C, 3 * C)
        p[h + "attn.c_attn.bias"] = 0.01 * torch.randn(3 * C, generator=gen)
        p[h + "attn.c_proj.weight"] = torch.randn(C, C, generator=gen) * proj
        p[h + "attn.c_proj.bias"] = 0.01 * torch.randn(C, generator=gen)
        p[h + "ln_2.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        p[h + "ln_2.bias"] = 0.1 * torch.randn(C, generator=gen)
        p[h + "mlp.c_fc.weight"] = n(C, 4 * C)
        p[h + "mlp.c_fc.bias"] = 0.01 * torch.randn(4 * C, generator=gen)
        p[h + "mlp.c_proj.weight"] = torch.randn(4 * C, C, generator=gen) * proj
        p[h + "mlp.c_proj.bias"] = 0.01 * torch.randn(C, generator=gen)
    p["ln_f.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
    p["ln_f.bias"] = 0.1 * torch.randn(C, generator=gen)
    return p


def forward(p, tokens, targets, gelu):
    F = torch.nn.functional
    x = p["wte.weight"][tokens] + p["wpe.weight"][: tokens.shape[1]]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        h = f"h.{l}."
        a = F.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], 1e-5)
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        a = F.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], 1e-5)
        f = F.gelu(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"], approximate=gelu)
        x = x + f @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    logits = x @ p["wte.weight"].t()
    return F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-100)


def main():
    for act, gelu in (("gelu_new", "tanh"), ("gelu", "none")):
        gen = torch.Generator().manual_seed(1234)
        p32 = init_params(gen)
        tokens = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
        targets = torch.roll(tokens, -1, dims=1)
        targets[:, -1] = torch.randint(0, V, (B,), generator=gen)
        targets[0, 3] = -100  # ignored positions exercise ignore_index
        targets[1, 10:14] = -100

        params = {k: v.double().clone().requires_grad_(True) for k, v in p32.items()}
        p64 = {k: v.double() for k, v in p32.items()}
        loss = forward(params, tokens, targets, gelu)
        loss.backward()
        ref = {"tokens": tokens.int(), "targets": targets.int(), "loss": loss.detach().float().reshape(1)}
        for k, v in params.items():
            ref["grad." + k] = v.grad.float()

        decay = [v for k, v in params.items() if k.endswith(".weight") and v.dim() == 2 and not k.startswith(("wte", "wpe"))]
        nodecay = [v for k, v in params.items() if not any(v is d for d in decay)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": nodecay, "weight_decay": 0.0}], lr=LR, betas=BETAS, eps=EPS)
        losses = []
        for step in range(3):
            opt.zero_grad()
            loss = forward(params, tokens, targets, gelu)
            losses.append(loss.item())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP)
            opt.step()
        with torch.no_grad():
            losses.append(forward(params, tokens, targets, gelu).item())
        ref["step_losses"] = torch.tensor(losses, dtype=torch.float32)

        # An llm.c token shard and the loss of the fixture weights on it, read
        # as `strand eval --batch 2 --seq 32` reads it: rows of T+1 tokens with
        # stride T, two batches.
        eg = torch.Generator().manual_seed(99)
        stream = torch.randint(0, V, (2 * B * T + 1,), generator=eg)
        with torch.no_grad():
            ev = [forward(p64, stream[i * B * T:(i + 1) * B * T].view(B, T), stream[i * B * T + 1:(i + 1) * B * T + 1].view(B, T), gelu).item() for i in range(2)]
        ref["eval_loss"] = torch.tensor([sum(ev) / 2], dtype=torch.float32)
        eval_tokens = stream
        for k, v in params.items():
            ref["step3." + k] = v.detach().float()

        out = os.path.join(HERE, "torch_" + act)
        os.makedirs(out, exist_ok=True)
        write_safetensors(os.path.join(out, "model.safetensors"), p32)
        write_safetensors(os.path.join(out, "reference.safetensors"), ref)
        header = struct.pack("<256i", 20240520, 1, len(eval_tokens), *([0] * 253))
        with open(os.path.join(out, "eval.bin"), "wb") as f:
            f.write(header + eval_tokens.numpy().astype("<u2").tobytes())
        cfg = {"model_type": "gpt2", "vocab_size": V, "n_layer": L, "n_head": NH, "n_embd": C,
               "n_positions": NPOS, "layer_norm_epsilon": 1e-5, "activation_function": act,
               "n_inner": None, "initializer_range": 0.02}
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        print(f"{out}: loss {losses[0]:.6f} after 3 steps {losses[-1]:.6f}")


if __name__ == "__main__":
    sys.exit(main())
