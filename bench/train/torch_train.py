#!/usr/bin/env python3
"""PyTorch anchor for strand's training-step benchmarks: the same pre-LN GPT-2
as strand's presets (learned positions, tied embeddings, tanh GELU, AdamW,
global-norm clipping), trained on random tokens; and for the llama-*
presets the same Llama-style decoder (RMSNorm, SwiGLU, RoPE with
rotate_half, grouped-query attention, no biases, untied lm_head), hand
written because transformers is not installed.

  torch_train.py --model small --threads 2 --steps 20            one process
  torch_train.py --model small --ddp 2 --threads 1 --steps 20    DDP over gloo

Prints one JSON line: tokens/s over the timed steps (after --warmup steps),
global over all ranks. Use Debian's /usr/bin/python3 (python3-torch) with
OPENBLAS_CORETYPE=SkylakeX and the OpenMP OpenBLAS (see ../../../shared/ANCHORS.md
for why; bench/train/run.sh sets both).
"""
import argparse, json, math, os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # layers, d, heads, seq, vocab, batch
    "tiny": (2, 128, 4, 64, 256, 8),
    "small": (4, 256, 8, 128, 512, 8),
    "gpt2s": (6, 384, 6, 256, 4096, 4),
}
LLAMA = {  # layers, d, heads, kv heads, MLP hidden, seq, vocab, batch (strand's llama-* presets)
    "llama-tiny": (2, 128, 4, 2, 344, 64, 256, 8),
    "llama-small": (4, 256, 8, 2, 688, 128, 512, 8),
    "llama-gpt2s": (6, 384, 6, 2, 1024, 256, 4096, 4),
}


def rms_norm(x, w, eps=1e-5):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, C, NH, NKV, H):
        super().__init__()
        d = C // NH
        self.w1, self.w2 = nn.Parameter(torch.ones(C)), nn.Parameter(torch.ones(C))
        self.q, self.k, self.v = nn.Linear(C, C, bias=False), nn.Linear(C, NKV * d, bias=False), nn.Linear(C, NKV * d, bias=False)
        self.o = nn.Linear(C, C, bias=False)
        self.gate, self.up, self.down = nn.Linear(C, H, bias=False), nn.Linear(C, H, bias=False), nn.Linear(H, C, bias=False)
        self.nh, self.nkv, self.d = NH, NKV, d

    def forward(self, x, mask, cos, sin):
        B, T, C = x.shape
        a = rms_norm(x, self.w1)
        q = self.q(a).view(B, T, self.nh, self.d).transpose(1, 2)
        k = self.k(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        v = self.v(a).view(B, T, self.nkv, self.d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        g = self.nh // self.nkv
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.d)
        att = att.masked_fill(~mask[:T, :T], float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, C))
        a = rms_norm(x, self.w2)
        return x + self.down(F.silu(self.gate(a)) * self.up(a))


class Llama(nn.Module):
    def __init__(self, L, C, NH, NKV, H, T, V):
        super().__init__()
        self.embed = nn.Embedding(V, C)
        self.h = nn.ModuleList(LlamaBlock(C, NH, NKV, H) for _ in range(L))
        self.norm = nn.Parameter(torch.ones(C))
        self.lm_head = nn.Linear(C, V, bias=False)
        self.mask = torch.ones(T, T, dtype=torch.bool).tril()
        d = C // NH
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
        emb = torch.cat([torch.outer(torch.arange(T).float(), inv)] * 2, dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.embed(idx)
        for b in self.h:
            x = b(x, self.mask, self.cos[:T], self.sin[:T])
        logits = self.lm_head(rms_norm(x, self.norm))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.nh = NH

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.nh)
        att = att.masked_fill(~mask[:T, :T], float("-inf")).softmax(-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, C, NH, T, V):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.mask = torch.ones(T, T, dtype=torch.bool).tril()  # plain attribute: gloo cannot broadcast bool buffers

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ddp", type=int, default=0, help="world size of a DDP (gloo) run")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward (oneDNN; AMX where the CPU has it)")
    a = ap.parse_args()
    if a.ddp:
        import torch.multiprocessing as mp
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        q = mp.get_context("spawn").SimpleQueue()
        mp.spawn(run, args=(a, q), nprocs=a.ddp, join=True)
        print(json.dumps(q.get()))
    else:
        print(json.dumps(run(0, a, None)))


def run(rank, a, q):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model in LLAMA:
        L, C, NH, NKV, H, T, V, B = LLAMA[a.model]
        model = Llama(L, C, NH, NKV, H, T, V)
    else:
        L, C, NH, T, V, B = PRESETS[a.model]
        model = GPT(L, C, NH, T, V)
    world = max(a.ddp, 1)
    if a.ddp:
        import torch.distributed as dist
        dist.init_process_group("gloo", rank=rank, world_size=world)
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(rank)
    rows = B // world  # the global batch is B sequences, as in strand
    data = torch.randint(0, V, (a.steps + a.warmup, rows, T + 1), generator=g)
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            t0 = time.perf_counter()
        x, y = data[i, :, :-1], data[i, :, 1:]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    dt = time.perf_counter() - t0
    res = {"framework": "pytorch " + torch.__version__, "model": a.model, "threads": a.threads, "ddp": a.ddp, "bf16": a.bf16,
           "tokens_per_s": a.steps * B * T / dt, "ms_per_step": 1000 * dt / a.steps}
    if a.ddp:
        import torch.distributed as dist
        dist.barrier()
        if rank == 0:
            q.put(res)
        dist.destroy_process_group()
    return res


if __name__ == "__main__":
    sys.exit(main())
