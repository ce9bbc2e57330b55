#!/bin/sh
# Interleaved A/B of two strand binaries (issue 15 point 5: "speed must
# not regress"): `strand bench collective` all-reduce over tcp and shm at
# 2 and 4 ranks, 4 KiB to 64 MiB, and the training step's tokens/s
# (`strand train --nproc 2 --model small --threads 1`, shared memory),
# old then new, round by round, each run pinned to the same cores. Writes
# JSON lines to $OUT and prints the table of medians and new/old ratios
# (compare.py).
#
#   OLD=/tmp/strand-old NEW=/tmp/strand-new sh bench/collective/ab.sh
#   ROUNDS=3 NPROCS="2 4" TRANSPORTS="tcp shm" STEPS=8 sh bench/collective/ab.sh
#   TRANSPORTS=rdma TRAIN=0 sh bench/collective/ab.sh   # soft verbs (RDMA_PROVIDER)
#
# Build OLD from the branch point (git worktree add ...; go build -o) and
# NEW from the branch. uptime goes to stderr before and after.
set -eu
OLD=${OLD:?path of the old strand binary}
NEW=${NEW:?path of the new strand binary}
OUT=${OUT:-/tmp/strand-ab}
ROUNDS=${ROUNDS:-3}
NPROCS=${NPROCS:-"2 4"}
TRANSPORTS=${TRANSPORTS:-"tcp shm"}
MIN=${MIN:-4K}
MAX=${MAX:-64M}
BUDGET=${BUDGET:-0.3}
STEPS=${STEPS:-8}
TRAIN=${TRAIN:-1}
PIN=${PIN:-"taskset -c 0-$(($(nproc) - 1))"}
rm -rf "$OUT"
mkdir -p "$OUT"
uptime >&2
for round in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    if [ "$side" = old ]; then bin=$OLD; else bin=$NEW; fi
    for tr in $TRANSPORTS; do
      for n in $NPROCS; do
        echo "round $round: $side $tr $n ranks" >&2
        # A failed run (the shared machine's other jobs have killed
        # benchmark processes) is logged and left out, not fatal.
        extra=
        if [ "$tr" = rdma ]; then extra="--rdma-provider ${RDMA_PROVIDER:-soft}"; fi
        # shellcheck disable=SC2086
        $PIN "$bin" bench collective --op allreduce --transport "$tr" $extra --nproc "$n" \
          --min "$MIN" --max "$MAX" --factor 4 --budget "$BUDGET" --json >> "$OUT/coll-$side-$tr-$n.jsonl" ||
          echo "round $round: $side $tr $n ranks FAILED (exit $?)" >&2
      done
    done
    if [ "$TRAIN" = 1 ]; then
      echo "round $round: $side train" >&2
      run=$(mktemp -d)
      $PIN "$bin" train --model small --nproc 2 --threads 1 --steps $((STEPS + 3)) --out "$run" --no-progress \
        --max-data-bytes 2000000 --ckpt-every 0 >"$OUT/train-$side-$round.log" 2>&1 ||
        echo "round $round: $side train FAILED (exit $?)" >&2
      /usr/bin/python3 - "$run/metrics.jsonl" >> "$OUT/train-$side.txt" <<'PY'
import json, statistics, sys
try:
    v = [json.loads(l)["tokens_per_s"] for l in open(sys.argv[1]) if '"tokens_per_s"' in l][3:]
    print(statistics.median(v))
except (OSError, statistics.StatisticsError):
    pass  # a failed run: nothing to report
PY
      rm -rf "$run"
    fi
  done
done
uptime >&2
/usr/bin/python3 "$(dirname "$0")/compare.py" "$OUT"
