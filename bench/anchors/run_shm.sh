#!/bin/sh
# Shared-memory all-reduce anchor (issue 18): strand over shared memory
# (shared windows, and messages only with --no-windows), strand over
# loopback TCP, PyTorch Gloo and Open MPI's shared-memory path
# (--mca btl self,vader), interleaved round by round on the same sizes,
# plus a one-thread memcpy of 64 MiB measured in the same run. Writes JSON
# lines to $OUT and prints the markdown table (compare_shm.py).
#
#   sh bench/anchors/run_shm.sh            # from the repository root
#   ROUNDS=3 BUDGET=0.5 NPROCS="2 4" sh bench/anchors/run_shm.sh
#
# Needs: go, /usr/bin/python3 with torch (python3-torch), mpicc/mpirun
# (apt-get install openmpi-bin libopenmpi-dev).
set -eu
OUT=${OUT:-/tmp/strand-anchors-shm}
ROUNDS=${ROUNDS:-2}
NPROCS=${NPROCS:-"2 4"}
MIN=${MIN:-4K}
MAX=${MAX:-64M}
BUDGET=${BUDGET:-0.5}
PIN=${PIN:-"taskset -c 0-$(($(nproc) - 1))"}
rm -rf "$OUT"
mkdir -p "$OUT"
go build -o "$OUT/strand" ./cmd/strand
mpicc -O2 -o "$OUT/mpi_bench" bench/anchors/mpi_bench.c
bytes() { python3 -c "import sys; s=sys.argv[1].upper(); m={'K':1<<10,'M':1<<20,'G':1<<30}.get(s[-1],1); print(int(s[:-1] if m>1 else s)*m)" "$1"; }
MINB=$(bytes "$MIN")
MAXB=$(bytes "$MAX")
uptime >&2
for round in $(seq 1 "$ROUNDS"); do
  /usr/bin/python3 -c '
import time, torch, json
torch.set_num_threads(1)
a = torch.ones(16 << 20); b = torch.empty(16 << 20)
best = 1e9
for _ in range(20):
    t = time.perf_counter(); b.copy_(a); best = min(best, time.perf_counter() - t)
print(json.dumps({"memcpy_gbps": (64 << 20) / best / 1e9}))' >> "$OUT/memcpy.jsonl"
  for n in $NPROCS; do
    for tr in shm tcp; do
      echo "round $round, $n ranks: strand $tr" >&2
      $PIN "$OUT/strand" bench collective --op allreduce --transport "$tr" --nproc "$n" --min "$MIN" --max "$MAX" --factor 4 --budget "$BUDGET" --json >> "$OUT/strand$tr-$n.jsonl"
    done
    echo "round $round, $n ranks: strand shm, messages only (no shared windows)" >&2
    $PIN "$OUT/strand" bench collective --op allreduce --transport shm --no-windows --nproc "$n" --min "$MIN" --max "$MAX" --factor 4 --budget "$BUDGET" --json >> "$OUT/strandshmmsg-$n.jsonl"
    echo "round $round, $n ranks: gloo" >&2
    OMP_NUM_THREADS=1 $PIN /usr/bin/python3 bench/anchors/gloo_bench.py --nproc "$n" --min "$MIN" --max "$MAX" --factor 4 --budget "$BUDGET" >> "$OUT/gloo-$n.jsonl"
    echo "round $round, $n ranks: open mpi (shared memory)" >&2
    $PIN mpirun --allow-run-as-root --oversubscribe -np "$n" --bind-to none \
      --mca pml ob1 --mca btl self,vader \
      "$OUT/mpi_bench" "$MINB" "$MAXB" 4 "$BUDGET" >> "$OUT/mpishm-$n.jsonl"
  done
done
uptime >&2
/usr/bin/python3 bench/anchors/compare_shm.py "$OUT"
