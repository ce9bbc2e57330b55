#!/usr/bin/env python3
"""The table of ab.sh: per transport, rank count and size, the median
time (us) over the rounds of the old and the new binary, and new/old
(below 1: the new one is faster); then the training step's median
tokens/s of each side. Medians, not bests: both sides ran interleaved on
the same busy machine, so each side's median sees the same load."""
import glob, json, os, statistics, sys
from collections import defaultdict

def main(out):
    times = defaultdict(list)  # (side, tr, n, size) -> [time_us]
    for path in glob.glob(os.path.join(out, "coll-*.jsonl")):
        _, side, tr, n = os.path.basename(path)[:-len(".jsonl")].split("-")
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                if not r.get("ok", True):
                    sys.exit("a run reported a wrong result: %s %s" % (path, line))
                times[(side, tr, int(n), r["size_bytes"])].append(r["time_us"])
    keys = sorted({k[1:] for k in times})
    print("| transport | ranks | size | old us (median) | new us (median) | new/old | old busbw GB/s | new busbw GB/s | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tr, n, size in keys:
        o, w = times.get(("old", tr, n, size), []), times.get(("new", tr, n, size), [])
        if not o or not w:
            continue
        mo, mw = statistics.median(o), statistics.median(w)
        bus = lambda t: 2 * (n - 1) / n * size / (t * 1e-6) / 1e9
        print("| %s | %d | %s | %.1f | %.1f | %.2f | %.3f | %.3f | %d/%d |" % (
            tr, n, human(size), mo, mw, mw / mo, bus(mo), bus(mw), len(o), len(w)))
    tp = {}
    for side in ("old", "new"):
        p = os.path.join(out, "train-%s.txt" % side)
        if os.path.exists(p):
            tp[side] = [float(l) for l in open(p) if l.strip()]
    if len(tp) == 2:
        mo, mw = statistics.median(tp["old"]), statistics.median(tp["new"])
        print()
        print("| training step (small, 2 ranks, shared memory) | old tokens/s | new tokens/s | new/old | runs |")
        print("|---|---:|---:|---:|---:|")
        print("| median of per-run medians | %.0f | %.0f | %.2f | %d/%d |" % (mo, mw, mw / mo, len(tp["old"]), len(tp["new"])))
        print("| per run, old | %s | | | |" % ", ".join("%.0f" % x for x in tp["old"]))
        print("| per run, new | | %s | | |" % ", ".join("%.0f" % x for x in tp["new"]))

def human(b):
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= div:
            return "%d %s" % (b // div, unit)
    return "%d B" % b

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/strand-ab")
