#!/usr/bin/python3
"""Anchor worker for bench/gemm: times float32 matmul in numpy and torch.

Started by `go run ./bench/gemm/compare` (one worker per thread count) with
OPENBLAS_CORETYPE=SkylakeX, LD_LIBRARY_PATH pointing at the OpenMP build of
OpenBLAS and OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set. It reads one JSON
request per line on stdin:

    {"tA": false, "tB": true, "m": 512, "n": 384, "k": 128, "min_seconds": 0.05}

("dtype": "bf16" times torch.mm on bfloat16 tensors instead; numpy is
skipped.)

and answers one JSON line per request:

    {"numpy": <GFLOP/s>, "numpy_cpu": <GFLOP per CPU-second of the calling
     thread>, "torch": ..., "torch_cpu": ..., "core": "<OpenBLAS core>"}

The per-CPU-second rates are meaningful with one thread only (the work runs
on the calling thread); they do not count time spent waiting for a CPU on a
loaded machine.

A and B are stored as strand stores them (transposed operands as the
transposed row-major array), so numpy and torch call sgemm with the same
transpose flags strand receives. Both write into a preallocated C.
"""
import ctypes
import json
import os
import sys
import time

import numpy as np
import torch


def openblas_core():
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            f = lib.openblas_get_corename
            f.restype = ctypes.c_char_p
            return f().decode()
        except (OSError, AttributeError):
            continue
    return "unknown"


def rate(fn, flops, min_seconds):
    """Returns (GFLOP/s by wall clock, GFLOP/s per CPU-second of this thread)."""
    fn()  # warm up (page in C, start the thread pool)
    iters, start, cpu0 = 0, time.perf_counter(), time.thread_time()
    while True:
        fn()
        iters += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and iters >= 3:
            cpu = max(time.thread_time() - cpu0, 1e-9)
            return flops * iters / elapsed / 1e9, flops * iters / cpu / 1e9


def main():
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    core = openblas_core()
    rng = np.random.default_rng(1)
    for line in sys.stdin:
        req = json.loads(line)
        m, n, k = req["m"], req["n"], req["k"]
        a = rng.standard_normal((k, m) if req["tA"] else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if req["tB"] else (k, n), dtype=np.float32)
        a_op = a.T if req["tA"] else a
        b_op = b.T if req["tB"] else b
        c = np.empty((m, n), dtype=np.float32)
        flops = 2.0 * m * n * k
        secs = req.get("min_seconds", 0.05)
        out = {"core": core, "threads": threads}
        if req.get("dtype") == "bf16":
            # numpy has no bf16; torch runs bf16 matmul through oneDNN.
            ta = torch.from_numpy(a).to(torch.bfloat16)
            tb = torch.from_numpy(b).to(torch.bfloat16)
            ta, tb = (ta.t() if req["tA"] else ta), (tb.t() if req["tB"] else tb)
            tc = torch.empty((m, n), dtype=torch.bfloat16)
            out["numpy"], out["numpy_cpu"] = 0.0, 0.0
            out["torch"], out["torch_cpu"] = rate(lambda: torch.mm(ta, tb, out=tc), flops, secs)
            print(json.dumps(out), flush=True)
            continue
        out["numpy"], out["numpy_cpu"] = rate(lambda: np.matmul(a_op, b_op, out=c), flops, secs)
        ta, tb, tc = torch.from_numpy(a_op), torch.from_numpy(b_op), torch.from_numpy(c)
        out["torch"], out["torch_cpu"] = rate(lambda: torch.mm(ta, tb, out=tc), flops, secs)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
