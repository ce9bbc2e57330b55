#!/usr/bin/env bash
# Measured pipeline bubble of every schedule the trainer runs, on pp2 with
# one core per stage (the 2-core machine), against the theory the run
# prints beside it. A compute-dominated model (the `small` preset, one
# thread per stage): transfers are small next to a stage's work.
#
#   bash bench/pipeline/measure.sh [STRAND_BIN] [STEPS]
#
# Prints one markdown row per (schedule, micro-batches): step time (median
# of the run's steps after the first), measured and theoretical bubble.
# Check `uptime` before and after: a busy machine stretches everything.
set -euo pipefail
bin=${1:-}
steps=${2:-12}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/strand
  go build -o "$bin" ./cmd/strand
fi
out=$(mktemp -d)
echo "uptime: $(uptime)"
echo
echo "| schedule | micro-batches | step ms (median) | measured bubble | theoretical |"
echo "|---|---:|---:|---:|---:|"
for m in 4 8; do
  for s in gpipe 1f1b zb-h1 zb-h2; do
    run="$out/$s-$m"
    log=$(taskset -c 0,1 "$bin" train --model small --n-layer 8 --seq 128 --batch "$((2 * m))" --microbatches "$m" \
      --nproc 2 --pp 2 --schedule "$s" --threads 1 --steps "$steps" --no-progress --val-frac 0 --out "$run" 2>&1)
    bubble=$(echo "$log" | sed -n 's/.*pipeline bubble: measured \([0-9.]*%\), theoretical \([0-9.]*%\).*/\1 \2/p')
    ms=$(python3 - "$run/metrics.jsonl" <<'PY'
import json, statistics, sys
t = [json.loads(l)["step_seconds"] for l in open(sys.argv[1]) if '"step_seconds"' in l][1:]
print(f"{1000 * statistics.median(t):.0f}")
PY
)
    set -- $bubble
    echo "| $s | $m | $ms | $1 | $2 |"
  done
done
echo
echo "uptime: $(uptime)"
