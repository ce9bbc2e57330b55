#!/usr/bin/env python3
"""PyTorch anchor for strand's training-step benchmarks: the same pre-LN GPT-2
as strand's presets (learned positions, tied embeddings, tanh GELU, AdamW,
global-norm clipping), trained on random tokens.

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
    L, C, NH, T, V, B = PRESETS[a.model]
    world = max(a.ddp, 1)
    torch.manual_seed(0)
    model = GPT(L, C, NH, T, V)
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
