#!/usr/bin/env bash
# Training throughput, strand vs PyTorch 1.13 on the same model, data size and
# machine, interleaved in one run (the machine is noisy: compare ratios).
#
#   bash bench/train/run.sh [rounds] [steps] [models...]
#
# For each model: one process with 1 and 2 threads, and data-parallel x2 with
# one thread per process (strand --nproc 2; PyTorch DDP over gloo). Prints a
# markdown table of median tokens/s (global) for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}; steps=${2:-20}; shift 2 || true
models=("${@:-tiny small}")
[ $# -eq 0 ] && models=(tiny small)
export OPENBLAS_CORETYPE=SkylakeX
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
bin=$(mktemp -d)/strand
go build -o "$bin" ./cmd/strand
out=$(mktemp)
strand_tps() { # args...; median tokens/s of steps after the first 3
  local run; run=$(mktemp -d)
  "$bin" train "$@" --steps $((steps + 3)) --out "$run" --no-progress --max-data-bytes 2000000 >/dev/null 2>&1
  python3 - "$run/metrics.jsonl" <<'PY'
import json, statistics, sys
v = [json.loads(l)["tokens_per_s"] for l in open(sys.argv[1]) if '"tokens_per_s"' in l][3:]
print(statistics.median(v))
PY
}
torch_tps() {
  /usr/bin/python3 bench/train/torch_train.py "$@" --steps "$steps" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])'
}
for r in $(seq "$rounds"); do
  for m in "${models[@]}"; do
    echo "$m strand_1t $(strand_tps --model "$m" --threads 1)" >>"$out"
    echo "$m torch_1t $(torch_tps --model "$m" --threads 1)" >>"$out"
    echo "$m strand_2t $(strand_tps --model "$m" --threads 2)" >>"$out"
    echo "$m torch_2t $(torch_tps --model "$m" --threads 2)" >>"$out"
    echo "$m strand_dp2 $(strand_tps --model "$m" --nproc 2 --threads 1)" >>"$out"
    echo "$m torch_ddp2 $(torch_tps --model "$m" --ddp 2 --threads 1)" >>"$out"
  done
done
python3 - "$out" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m, k, v = line.split()
    d[(m, k)].append(float(v))
med = {k: statistics.median(v) for k, v in d.items()}
print("| model | strand 1 thr | PyTorch 1 thr | ratio | strand 2 thr | PyTorch 2 thr | ratio | strand DP x2 | PyTorch DDP x2 | ratio | strand DPx2 / 2 thr | PyTorch DDPx2 / 2 thr |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in dict.fromkeys(k[0] for k in med):
    g = lambda k: med[(m, k)]
    print(f"| {m} | {g('strand_1t'):,.0f} | {g('torch_1t'):,.0f} | {g('strand_1t')/g('torch_1t'):.2f} | "
          f"{g('strand_2t'):,.0f} | {g('torch_2t'):,.0f} | {g('strand_2t')/g('torch_2t'):.2f} | "
          f"{g('strand_dp2'):,.0f} | {g('torch_ddp2'):,.0f} | {g('strand_dp2')/g('torch_ddp2'):.2f} | "
          f"{g('strand_dp2')/g('strand_2t'):.2f} | {g('torch_ddp2')/g('torch_2t'):.2f} |")
PY
