#!/usr/bin/env python3
"""Training-step benchmark: strand vs PyTorch 1.13 on the same presets, in
one run, interleaved (the machine is shared and noisy: compare ratios).

  /usr/bin/python3 bench/train/step.py --strand BIN [--rounds 3] [--out results.jsonl]
      [--strand-base BASEBIN]

For each round, for each case (preset, threads, precision) it runs strand
then PyTorch (bench/train/torch_train.py) as child processes and records:
tokens/s (strand: median of its per-step rates after 3 warm-up steps;
PyTorch: over its timed steps after 3 warm-up steps), the child's CPU time
(user+sys) and wall time, and its peak RSS (ru_maxrss from wait4, so per
process). Prints a markdown table of medians over rounds.

With --strand-base, each round also runs a baseline strand build (e.g. the
previous commit, from `git worktree add`) right before the new one, and a
second table gives new/base per case: the A/B of a change, interleaved.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STEPS = {"tiny": 30, "small": 15, "gpt2s": 8, "llama-tiny": 30, "llama-small": 15, "llama-gpt2s": 8}
CASES = [  # preset, threads, precision
    ("tiny", 1, "fp32"), ("tiny", 2, "fp32"),
    ("small", 1, "fp32"), ("small", 2, "fp32"),
    ("gpt2s", 1, "fp32"), ("gpt2s", 2, "fp32"),
    ("gpt2s", 1, "bf16"), ("gpt2s", 2, "bf16"),
    ("llama-gpt2s", 1, "fp32"), ("llama-gpt2s", 2, "fp32"),
]


def child(cmd, env):
    """Runs cmd; returns (stdout, cpu seconds, wall seconds, peak RSS bytes)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {p.returncode}")
    return out.decode(), ru.ru_utime + ru.ru_stime, wall, ru.ru_maxrss * 1024


def strand(binary, model, threads, precision, env):
    steps = STEPS[model]
    with tempfile.TemporaryDirectory() as run:
        _, cpu, wall, rss = child([binary, "train", "--model", model, "--threads", str(threads),
                                   "--precision", precision, "--steps", str(steps + 3), "--out", run,
                                   "--no-progress", "--max-data-bytes", "2000000", "--eval-batches", "1"], env)
        rates = [json.loads(l)["tokens_per_s"] for l in open(os.path.join(run, "metrics.jsonl"))
                 if '"tokens_per_s"' in l][3:]
    return statistics.median(rates), cpu, wall, rss


def torch(model, threads, precision, env):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "torch_train.py"), "--model", model,
           "--threads", str(threads), "--steps", str(STEPS[model])]
    if precision == "bf16":
        cmd.append("--bf16")
    out, cpu, wall, rss = child(cmd, env)
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"], cpu, wall, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strand", required=True, help="strand binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="", help="also append raw JSON lines here")
    ap.add_argument("--cases", default="", help="comma-separated preset:threads:precision subset")
    ap.add_argument("--strand-base", default="", help="baseline strand binary for an interleaved A/B")
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX",
               LD_LIBRARY_PATH="/usr/lib/x86_64-linux-gnu/openblas-openmp")
    cases = CASES
    if a.cases:
        cases = [(m, int(t), p) for m, t, p in (c.split(":") for c in a.cases.split(","))]
    rows = {}
    for r in range(a.rounds):
        for case in cases:
            fws = ("base", "strand", "torch") if a.strand_base else ("strand", "torch")
            for fw in fws:
                if fw == "strand":
                    res = strand(a.strand, *case, env)
                elif fw == "base":
                    res = strand(a.strand_base, *case, env)
                else:
                    res = torch(*case, env)
                rec = dict(zip(("tokens_per_s", "cpu_s", "wall_s", "peak_rss"), res),
                           framework=fw, model=case[0], threads=case[1], precision=case[2], round=r)
                print(json.dumps(rec), file=sys.stderr, flush=True)
                if a.out:
                    with open(a.out, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                rows.setdefault((case, fw), []).append(res)
    med = {k: [statistics.median(x[i] for x in v) for i in range(4)] for k, v in rows.items()}
    print("| preset | threads | precision | strand tok/s | PyTorch tok/s | ratio | strand CPU s / wall s | PyTorch CPU s / wall s | strand peak RSS MB | PyTorch peak RSS MB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        s, t = med[(case, "strand")], med[(case, "torch")]
        print(f"| {case[0]} | {case[1]} | {case[2]} | {s[0]:,.0f} | {t[0]:,.0f} | {s[0]/t[0]:.2f} | "
              f"{s[1]:.1f} / {s[2]:.1f} | {t[1]:.1f} / {t[2]:.1f} | {s[3]/1e6:.0f} | {t[3]/1e6:.0f} |")
    if not a.strand_base:
        return
    # per-round ratios (the two builds ran back to back), then their median
    print()
    print("| preset | threads | precision | base tok/s | new tok/s | new/base (median of rounds) | base/PyTorch | new/PyTorch | base CPU s | new CPU s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        b, s, t = rows[(case, "base")], rows[(case, "strand")], rows[(case, "torch")]
        ab = statistics.median(x[0] / y[0] for x, y in zip(s, b))
        mb, ms, mt = med[(case, "base")], med[(case, "strand")], med[(case, "torch")]
        print(f"| {case[0]} | {case[1]} | {case[2]} | {mb[0]:,.0f} | {ms[0]:,.0f} | {ab:.2f} | "
              f"{mb[0]/mt[0]:.2f} | {ms[0]/mt[0]:.2f} | {mb[1]:.1f} | {ms[1]:.1f} |")


if __name__ == "__main__":
    main()
