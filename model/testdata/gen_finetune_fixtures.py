#!/usr/bin/env python3
"""Writes model/testdata/finetune.json: PyTorch references for the
fine-tuning losses and layers, checked by Go tests in model/ and finetune/.

  sft   masked SFT loss: logits (N, V), targets with -100 on prompt
        positions; loss = mean cross-entropy over the counted positions and
        its gradient dlogits.
  lora  y = x @ W + b + (alpha/r) * (x @ A) @ B with W, b frozen; for
        L = sum(y * R): y, dx, dA, dB.
  bt    Bradley-Terry: loss = mean(-logsigmoid(r_chosen - r_rejected)) and
        its gradients with respect to both reward vectors.
  dpo   DPO: logits = beta * ((pi_c - ref_c) - (pi_r - ref_r)), loss =
        mean(-logsigmoid(logits)), gradients with respect to the policy
        log-probs, implicit rewards beta*(pi - ref) of both sides.

Values are drawn in float32 and computed in float64. packed_sft() below
writes finetune_packed.json: a packed, masked SFT batch through a GPT.
Run: /usr/bin/python3 model/testdata/gen_finetune_fixtures.py
"""
import json, os
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
g = torch.Generator().manual_seed(9)


def randn(*shape, std=1.0):
    return (torch.randn(*shape, generator=g) * std).float().double()


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


out = {}

# masked SFT loss
N, V = 6, 7
logits = randn(N, V, std=2.0).requires_grad_()
targets = torch.tensor([-100, -100, 3, 0, 6, -100])
loss = F.cross_entropy(logits, targets, ignore_index=-100)
loss.backward()
out["sft"] = {"n": N, "v": V, "logits": flat(logits), "targets": targets.tolist(),
              "loss": loss.item(), "dlogits": flat(logits.grad)}

# LoRA linear
N, C, OC, R, ALPHA = 4, 6, 5, 2, 4.0
x = randn(N, C).requires_grad_()
W, b = randn(C, OC, std=0.5), randn(OC, std=0.1)
A = randn(C, R, std=0.5).requires_grad_()
B = randn(R, OC, std=0.5).requires_grad_()
Rup = randn(N, OC)
y = x @ W + b + (ALPHA / R) * (x @ A) @ B
(y * Rup).sum().backward()
out["lora"] = {"n": N, "c": C, "oc": OC, "r": R, "alpha": ALPHA, "x": flat(x), "w": flat(W), "b": flat(b),
               "a": flat(A), "bmat": flat(B), "rup": flat(Rup), "y": flat(y),
               "dx": flat(x.grad), "da": flat(A.grad), "db": flat(B.grad)}

# Bradley-Terry
P = 8
rc, rr = randn(P).requires_grad_(), randn(P).requires_grad_()
loss = -F.logsigmoid(rc - rr).mean()
loss.backward()
out["bt"] = {"chosen": flat(rc), "rejected": flat(rr), "loss": loss.item(),
             "dchosen": flat(rc.grad), "drejected": flat(rr.grad)}

# DPO
BETA = 0.1
pc, pr = randn(P, std=5).sub(20).requires_grad_(), randn(P, std=5).sub(20).requires_grad_()
refc, refr = randn(P, std=5).sub(20), randn(P, std=5).sub(20)
z = BETA * ((pc - refc) - (pr - refr))
loss = -F.logsigmoid(z).mean()
loss.backward()
out["dpo"] = {"beta": BETA, "policy_chosen": flat(pc), "policy_rejected": flat(pr),
              "ref_chosen": flat(refc), "ref_rejected": flat(refr), "loss": loss.item(),
              "dchosen": flat(pc.grad), "drejected": flat(pr.grad),
              "reward_chosen": flat(BETA * (pc - refc)), "reward_rejected": flat(BETA * (pr - refr))}

with open(os.path.join(HERE, "finetune.json"), "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", os.path.join(HERE, "finetune.json"))


# Packed masked SFT through a whole GPT: two rows of T positions, each
# packing examples (segments) with prompt targets at -100; attention stays
# inside a segment and learned positions restart per segment. Weights,
# inputs, loss (mean over counted targets) and every gradient go to
# finetune_packed.json.
def packed_sft():
    import math
    F = torch.nn.functional
    L, C, NH, V, P, T = 2, 8, 2, 32, 16, 12
    pg = torch.Generator().manual_seed(21)
    n = lambda *s, std=0.2: (torch.randn(*s, generator=pg) * std).float().double()
    p = {"wte.weight": n(V, C), "wpe.weight": n(P, C), "ln_f.weight": 1 + n(C, std=0.1), "ln_f.bias": n(C, std=0.1)}
    for l in range(L):
        h = f"h.{l}."
        p.update({h + "ln_1.weight": 1 + n(C, std=0.1), h + "ln_1.bias": n(C, std=0.1),
                  h + "attn.c_attn.weight": n(C, 3 * C), h + "attn.c_attn.bias": n(3 * C, std=0.05),
                  h + "attn.c_proj.weight": n(C, C), h + "attn.c_proj.bias": n(C, std=0.05),
                  h + "ln_2.weight": 1 + n(C, std=0.1), h + "ln_2.bias": n(C, std=0.1),
                  h + "mlp.c_fc.weight": n(C, 4 * C), h + "mlp.c_fc.bias": n(4 * C, std=0.05),
                  h + "mlp.c_proj.weight": n(4 * C, C), h + "mlp.c_proj.bias": n(C, std=0.05)})
    for v in p.values():
        v.requires_grad_(True)
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 3, 3]])
    tok = torch.randint(0, V, (2, T), generator=pg)
    tgt = torch.randint(0, V, (2, T), generator=pg)
    for b in range(2):  # the first position of every segment is prompt: ignored
        for t in range(T):
            if t == 0 or seg[b, t] != seg[b, t - 1]:
                tgt[b, t] = -100
    tgt[1, 10:] = -100  # padding segment
    pos = torch.zeros(2, T, dtype=torch.long)
    for b in range(2):
        for t in range(1, T):
            pos[b, t] = 0 if seg[b, t] != seg[b, t - 1] else pos[b, t - 1] + 1
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    mask = causal & (seg[:, :, None] == seg[:, None, :])  # (2, T, T)
    x = p["wte.weight"][tok] + p["wpe.weight"][pos]
    for l in range(L):
        h = f"h.{l}."
        a = F.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], 1e-5)
        q, k, v = (a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (z.view(2, T, NH, C // NH).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
        att = att.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(2, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        a = F.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], 1e-5)
        f = F.gelu(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + f @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    loss = F.cross_entropy((x @ p["wte.weight"].t()).view(-1, V), tgt.view(-1), ignore_index=-100)
    loss.backward()
    out = {"config": {"vocab": V, "layers": L, "heads": NH, "embd": C, "positions": P, "T": T},
           "tokens": tok.view(-1).tolist(), "targets": tgt.view(-1).tolist(), "segments": seg.view(-1).tolist(),
           "loss": loss.item(), "params": {k: flat(v) for k, v in p.items()}, "grads": {k: flat(v.grad) for k, v in p.items()}}
    short = lambda xs: [float("%.8g" % v) for v in xs]  # float32 precision keeps the file small
    out["params"] = {k: short(v) for k, v in out["params"].items()}
    out["grads"] = {k: short(v) for k, v in out["grads"].items()}
    with open(os.path.join(HERE, "finetune_packed.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", os.path.join(HERE, "finetune_packed.json"))


packed_sft()
