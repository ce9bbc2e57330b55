#!/bin/sh
# ZeRO-2/3 and recomputation measurements for issue #17 (bench/RESULTS.md,
# "ZeRO and recomputation"). Usage: sh bench/zero/run.sh [BIN] [OUTDIR]
#   BIN     a strand binary (default: built from this tree)
#   OUTDIR  where the runs go (default: a fresh temporary directory)
# Prints one line per run: the memory categories and peak RSS from the
# run's first metrics record (maxed over ranks by the run loop), the plan's
# prediction, and the median step time of the steps after the first.
# Memory does not depend on the machine's load; the step-time ratios do:
# run them on a quiet machine (check uptime) and interleave (ROUNDS).
set -eu
BIN=${1:-}
OUT=${2:-$(mktemp -d)}
ROUNDS=${ROUNDS:-2}
PARTS=${PARTS:-123} # which of the parts below to run (4 is SCALE=1)
if [ -z "$BIN" ]; then
	BIN=$OUT/strand
	go build -o "$BIN" ./cmd/strand
fi
uptime

# run NAME ARGS...: train, then print the record
run() {
	name=$1
	shift
	dir=$OUT/$name
	rm -rf "$dir"
	plan=$("$BIN" train "$@" --plan --log-format json 2>/dev/null | python3 -c 'import json,sys; p=json.load(sys.stdin)["memory_plan"]["largest"]; print(p["Total"] if "Total" in p else p.get("total"))' || echo "?")
	start=$(date +%s.%N)
	"$BIN" train "$@" --out "$dir" --no-progress --ckpt-interval 0 >"$dir.log" 2>&1 || { echo "$name: failed, see $dir.log"; tail -5 "$dir.log"; return; }
	python3 - "$dir/metrics.jsonl" "$name" "$plan" <<'PY'
import json, sys, statistics
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "step_seconds" in r]
first = next(r for r in recs if "mem_total" in r)
mib = lambda b: b / 2**20
state = first["mem_params"] + first["mem_grads"] + first["mem_optimizer"]
plan = sys.argv[3]
plan = f"{mib(int(plan)):.0f}" if plan.isdigit() else plan
t = statistics.median(r["step_seconds"] for r in steps[1:]) if len(steps) > 1 else steps[0]["step_seconds"]
print(f'{sys.argv[2]:32s} params {mib(first["mem_params"]):8.1f}  grads {mib(first["mem_grads"]):8.1f}  optim {mib(first["mem_optimizer"]):8.1f}  '
      f'state {mib(state):8.1f}  acts {mib(first["mem_activations"]):7.1f}  comm {mib(first["mem_comm"]):6.1f}  MiB | '
      f'peak RSS {mib(first["peak_rss"]):8.1f} MiB (plan total {plan} MiB) | step {t:.3f} s  loss {steps[0]["loss"]:.3f} -> {steps[-1]["loss"]:.3f}')
PY
}

# 1. gpt2 (124M) on four ranks: DDP against ZeRO-3 at the same micro-batch
G="--model gpt2 --nproc 4 --batch 4 --seq 128 --steps 3 --threads 1 --max-data-bytes 2000000"
case $PARTS in *1*)
	run gpt2-dp4-ddp $G --zero 0
	run gpt2-dp4-zero3 $G --zero 3
	;;
esac

# 2. full recomputation at gpt2s, batch 8, seq 256 (one process, two threads)
R="--model gpt2s --batch 8 --seq 256 --steps 6 --threads 2 --max-data-bytes 2000000"
case $PARTS in *2*)
	for i in $(seq "$ROUNDS"); do
		run gpt2s-recompute-none-$i $R --recompute none
		run gpt2s-recompute-full-$i $R --recompute full
	done
	;;
esac

# 3. ZeRO-3 step time on small at DP 2 against DDP
S="--model small --nproc 2 --batch 16 --seq 128 --steps 20 --threads 1 --max-data-bytes 2000000"
case $PARTS in *3*)
	for i in $(seq "$ROUNDS"); do
		run small-dp2-ddp-$i $S --zero 0
		run small-dp2-zero3-$i $S --zero 3
	done
	;;
esac

# 4. scale (SCALE=1; about 18 GiB and 5 minutes): the largest gpt2-shaped
# model DDP trains on four ranks within ~4.4 GiB a rank, and the largest
# ZeRO-3 with full recomputation trains within the same (--plan sized both)
if [ "${SCALE:-0}" = 1 ]; then
	C="--model gpt2 --nproc 4 --batch 4 --seq 128 --threads 1 --max-data-bytes 2000000 --eval-batches 1"
	run scale-ddp-18x1024 $C --steps 4 --n-layer 18 --n-embd 1024 --n-head 16 --zero 0
	run scale-zero3-full-28x1536 $C --steps 5 --lr 1e-4 --n-layer 28 --n-embd 1536 --n-head 24 --zero 3 --recompute full
fi
uptime
