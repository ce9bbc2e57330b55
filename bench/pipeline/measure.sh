#!/usr/bin/env bash
# Measured pipeline bubble of every schedule the trainer runs, on pp2 with
# one core per stage (the 2-core machine), against the theory the run
# prints beside it. A compute-dominated model (the `small` preset with 8
# layers, one thread per stage): transfers are small next to a stage's work.
#
#   bash bench/pipeline/measure.sh [STRAND_BIN] [STEPS] [ROUNDS]
#
# Prints one markdown row per (round, micro-batches, schedule): step time
# (median and minimum of the run's steps after the first), their ratios to
# 1F1B's in the same round, the measured bubble (the idle share of the
# makespan, and the waits between each stage's first and last compute),
# the theoretical one, and the
# 1-minute load average before the run. On a busy machine the minimum is
# the steadier figure: interference only ever adds time. The schedules run interleaved, round after round
# (each round in the other order), so a load change on the shared machine
# hits all of them alike; quote rounds whose load stayed low.
set -euo pipefail
bin=${1:-}
steps=${2:-12}
rounds=${3:-2}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/strand
  go build -o "$bin" ./cmd/strand
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT # each run's checkpoint is tens of MB
echo "uptime: $(uptime)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "| round | micro-batches | schedule | step ms median | min | median / 1F1B | min / 1F1B | measured bubble (makespan) | within compute windows | theoretical | load |"
echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
schedules=(gpipe 1f1b interleaved zb-h1 zb-h2)
for r in $(seq 1 "$rounds"); do
  order=("${schedules[@]}")
  if [ $((r % 2)) -eq 0 ]; then
    order=(zb-h2 zb-h1 interleaved 1f1b gpipe)
  fi
  for m in 4 8; do
    declare -A ms=() mn=() bub=() load=()
    for s in "${order[@]}"; do
      run="$out/$r-$s-$m"
      v=1
      if [ "$s" = interleaved ]; then v=2; fi
      load[$s]=$(cut -d' ' -f1 /proc/loadavg)
      log=$(taskset -c 0,1 "$bin" train --model small --n-layer 8 --seq 128 --batch "$((2 * m))" --microbatches "$m" \
        --nproc 2 --pp 2 --schedule "$s" --virtual-stages "$v" --threads 1 --steps "$steps" --no-progress --val-frac 0 --out "$run" 2>&1)
      bub[$s]=$(echo "$log" | sed -n 's/.*pipeline bubble: measured \([0-9.]*%\) of the makespan (\([0-9.]*%\) between.*theoretical \([0-9.]*%\).*/\1 \2 \3/p')
      read -r ms[$s] mn[$s] < <(python3 - "$run/metrics.jsonl" <<'PY'
import json, statistics, sys
t = [json.loads(l)["step_seconds"] for l in open(sys.argv[1]) if '"step_seconds"' in l][1:]
print(f"{1000 * statistics.median(t):.1f} {1000 * min(t):.1f}")
PY
)
      rm -rf "$run"
    done
    for s in "${schedules[@]}"; do
      label=$s
      if [ "$s" = interleaved ]; then label="interleaved V=2"; fi
      ratio=$(python3 -c "print(f'{${ms[$s]} / ${ms[1f1b]}:.3f} | {${mn[$s]} / ${mn[1f1b]}:.3f}')")
      set -- ${bub[$s]}
      echo "| $r | $m | $label | ${ms[$s]} | ${mn[$s]} | $ratio | $1 | $2 | $3 | ${load[$s]} |"
    done
    unset ms mn bub load
  done
done
echo
echo "uptime: $(uptime)"
