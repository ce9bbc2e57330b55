#!/usr/bin/env python3
"""Turn the JSON lines written by run.sh into the markdown table of
bench/RESULTS.md: per rank count and size, the busbw (GB/s) and median time
of strand, Gloo and Open MPI (TCP), and strand's ratios. With several
rounds, each implementation's best round per size is used (the machine is
shared; the best round is the least disturbed one)."""
import glob, json, os, sys
from collections import defaultdict

LOOPBACK_GBPS = 4.4  # one TCP stream over 127.0.0.1 (docs/ANCHORS.md measurement)
MEMCPY_GBPS = 6.4    # memcpy, one thread (same source)

def load(out):
    best = defaultdict(dict)  # (impl, n) -> size -> record
    for path in glob.glob(os.path.join(out, "*.jsonl")):
        impl = os.path.basename(path).split("-")[0]
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            key = (impl, r["nproc"])
            cur = best[key].get(r["size_bytes"])
            if cur is None or r["time_us"] < cur["time_us"]:
                best[key][r["size_bytes"]] = r
    return best

def human(b):
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= div:
            return "%d %s" % (b // div, unit)
    return "%d B" % b

def main(out):
    best = load(out)
    ns = sorted({n for (_, n) in best})
    print("| ranks | size | strand busbw | gloo busbw | mpi-tcp busbw | strand/gloo | strand/mpi | strand time us | gloo time us | mpi time us | strand check | strand busbw / loopback TCP | / memcpy | strand cpu us/call |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--:|---:|---:|---:|")
    for n in ns:
        s, g, m = best.get(("strand", n), {}), best.get(("gloo", n), {}), best.get(("mpi", n), {})
        for size in sorted(s):
            a = s[size]
            gb, mb = g.get(size), m.get(size)
            f = lambda r, k, fmt: (fmt % r[k]) if r else "-"
            ratio = lambda r: ("%.2fx" % (a["busbw_gbps"] / r["busbw_gbps"])) if r and r["busbw_gbps"] > 0 else "-"
            # cpu_us: CPU time of all strand ranks together per call (getrusage), in the best round
            cpu = ("%.0f" % a["cpu_us"]) if "cpu_us" in a else "-"
            print("| %d | %s | %.3f | %s | %s | %s | %s | %.1f | %s | %s | %s | %.0f%% | %.0f%% | %s |" % (
                n, human(size), a["busbw_gbps"], f(gb, "busbw_gbps", "%.3f"), f(mb, "busbw_gbps", "%.3f"),
                ratio(gb), ratio(mb), a["time_us"], f(gb, "time_us", "%.1f"), f(mb, "time_us", "%.1f"),
                "ok" if a["ok"] else "WRONG", 100 * a["busbw_gbps"] / LOOPBACK_GBPS, 100 * a["busbw_gbps"] / MEMCPY_GBPS, cpu))

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/strand-anchors")
