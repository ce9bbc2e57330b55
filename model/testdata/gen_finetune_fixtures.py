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

Values are drawn in float32 and computed in float64.
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
