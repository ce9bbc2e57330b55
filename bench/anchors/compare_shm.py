#!/usr/bin/env python3
"""The table of run_shm.sh: per rank count and size, the busbw (GB/s) of
strand over shared memory (shared windows; and messages only, "shm msgs"),
strand over TCP, Gloo and Open MPI's
shared-memory path, strand-shm's ratios to each, its fraction of the
memcpy bandwidth measured in the same run, and median times. Each
implementation's best round per size is used (the machine is shared)."""
import glob, json, os, sys
from collections import defaultdict

def load(out):
    best = defaultdict(dict)  # (impl, n) -> size -> record
    for path in glob.glob(os.path.join(out, "*-*.jsonl")):
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
    memcpy = max(json.loads(l)["memcpy_gbps"] for l in open(os.path.join(out, "memcpy.jsonl")) if l.strip())
    print("memcpy (one thread, 64 MiB, best of the run): %.2f GB/s\n" % memcpy)
    ns = sorted({n for (_, n) in best})
    print("| ranks | size | strand shm busbw | shm msgs busbw | strand tcp busbw | gloo busbw | mpi shm busbw | shm/gloo | shm/mpi-shm | shm/tcp | shm / memcpy | strand shm time us | shm msgs time us | mpi shm time us | gloo time us | check |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--:|")
    for n in ns:
        s = best.get(("strandshm", n), {})
        t, g, m = best.get(("strandtcp", n), {}), best.get(("gloo", n), {}), best.get(("mpishm", n), {})
        sm = best.get(("strandshmmsg", n), {})
        for size in sorted(s):
            a = s[size]
            tb, gb, mb, smb = t.get(size), g.get(size), m.get(size), sm.get(size)
            f = lambda r, k, fmt: (fmt % r[k]) if r else "-"
            ratio = lambda r: ("%.2fx" % (a["busbw_gbps"] / r["busbw_gbps"])) if r and r["busbw_gbps"] > 0 else "-"
            print("| %d | %s | %.3f | %s | %s | %s | %s | %s | %s | %s | %.0f%% | %.1f | %s | %s | %s | %s |" % (
                n, human(size), a["busbw_gbps"], f(smb, "busbw_gbps", "%.3f"), f(tb, "busbw_gbps", "%.3f"), f(gb, "busbw_gbps", "%.3f"), f(mb, "busbw_gbps", "%.3f"),
                ratio(gb), ratio(mb), ratio(tb), 100 * a["busbw_gbps"] / memcpy, a["time_us"], f(smb, "time_us", "%.1f"), f(mb, "time_us", "%.1f"),
                f(gb, "time_us", "%.1f"), "ok" if a["ok"] and (not tb or tb["ok"]) and (not smb or smb["ok"]) else "WRONG"))

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/strand-anchors-shm")
