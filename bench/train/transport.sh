#!/usr/bin/env bash
# Data-parallel training throughput over shared memory vs loopback TCP
# (issue 18): strand train --nproc N --transport shm|tcp, one thread per
# rank, interleaved round by round. Prints a markdown table of median
# global tokens/s (steps after the first 3).
#
#   bash bench/train/transport.sh [rounds] [steps] [models...]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-1}; steps=${2:-10}; shift 2 || true
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(small gpt2s)
NPROCS=${NPROCS:-"2 4"}
bin=$(mktemp -d)/strand
go build -o "$bin" ./cmd/strand
out=$(mktemp)
strand_tps() { # args...; median tokens/s of steps after the first 3
  local run; run=$(mktemp -d)
  "$bin" train "$@" --steps $((steps + 3)) --out "$run" --no-progress --max-data-bytes 2000000 --ckpt-every 0 >/dev/null 2>&1
  python3 - "$run/metrics.jsonl" <<'PY'
import json, statistics, sys
v = [json.loads(l)["tokens_per_s"] for l in open(sys.argv[1]) if '"tokens_per_s"' in l][3:]
print(statistics.median(v))
PY
  rm -rf "$run"
}
uptime >&2
for r in $(seq "$rounds"); do
  for m in "${models[@]}"; do
    for n in $NPROCS; do
      for tr in shm tcp; do
        echo "round $r: $m nproc $n $tr" >&2
        echo "$m $n $tr $(strand_tps --model "$m" --nproc "$n" --threads 1 --transport "$tr")" >>"$out"
      done
    done
  done
done
uptime >&2
python3 - "$out" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m, n, tr, v = line.split()
    d[(m, int(n), tr)].append(float(v))
med = {k: statistics.median(v) for k, v in d.items()}
print("| model | ranks | shm tokens/s | tcp tokens/s | shm / tcp |")
print("|---|---:|---:|---:|---:|")
for (m, n) in dict.fromkeys((k[0], k[1]) for k in med):
    s, t = med[(m, n, "shm")], med[(m, n, "tcp")]
    print(f"| {m} | {n} | {s:,.0f} | {t:,.0f} | {s/t:.2f} |")
PY
