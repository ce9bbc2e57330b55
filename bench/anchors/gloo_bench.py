#!/usr/bin/env python3
"""Gloo anchor for `strand bench collective`: the same sizes and the same
report (JSON lines with size_bytes, count, time_us = slowest rank's median,
algbw_gbps, busbw_gbps, ok) through torch.distributed's gloo backend, N
local processes over 127.0.0.1.

    /usr/bin/python3 bench/anchors/gloo_bench.py --nproc 2 --min 4K --max 64M --op allreduce
"""
import argparse, json, os, statistics, sys, tempfile, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def parse_size(s):
    s = s.upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(s[:-1] if mult > 1 else s) * mult


def bus_factor(op, n):
    return {"allreduce": 2 * (n - 1) / n, "allgather": (n - 1) / n, "reducescatter": (n - 1) / n}.get(op, 1.0)


def worker(rank, args, init_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=args.nproc)
    n = args.nproc
    size = args.min
    while size <= args.max:
        count = size // 4
        idx = torch.arange(count, dtype=torch.float32) % 3
        x = idx + (rank % 3)
        if args.op == "allreduce":
            dist.all_reduce(x)
            want = sum(idx + (r % 3) for r in range(n))
            ok = bool(torch.equal(x, want))
            run = lambda: dist.all_reduce(x)
        elif args.op == "broadcast":
            dist.broadcast(x, 0)
            ok = bool(torch.equal(x, idx))
            run = lambda: dist.broadcast(x, 0)
        else:
            raise SystemExit("op %s not implemented in the gloo anchor" % args.op)
        t0 = time.perf_counter()
        for _ in range(2):
            run()
        warm = torch.tensor([(time.perf_counter() - t0) / 2, 0.0 if ok else 1.0])
        dist.all_reduce(warm, op=dist.ReduceOp.MAX)
        iters = int(min(max(args.budget / max(warm[0].item(), 1e-7), 5), 2000))
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        med = torch.tensor([statistics.median(times)])
        dist.all_reduce(med, op=dist.ReduceOp.MAX)
        t = med.item()
        if rank == 0:
            alg = count * 4 / t / 1e9
            print(json.dumps({"impl": "gloo", "op": args.op, "nproc": n, "dtype": "f32", "size_bytes": count * 4,
                              "count": count, "iters": iters, "time_us": t * 1e6, "algbw_gbps": alg,
                              "busbw_gbps": alg * bus_factor(args.op, n), "ok": warm[1].item() == 0}), flush=True)
        size *= args.factor
    dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--op", default="allreduce")
    p.add_argument("--min", type=parse_size, default=4096)
    p.add_argument("--max", type=parse_size, default=64 << 20)
    p.add_argument("--factor", type=int, default=2)
    p.add_argument("--budget", type=float, default=0.3)
    args = p.parse_args()
    fd, init_file = tempfile.mkstemp(prefix="gloo-init-")
    os.close(fd)
    os.unlink(init_file)
    mp.spawn(worker, args=(args, init_file), nprocs=args.nproc, join=True)


if __name__ == "__main__":
    main()
