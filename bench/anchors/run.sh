#!/bin/sh
# Side-by-side all-reduce anchor: strand (TCP), PyTorch Gloo and Open MPI
# (TCP over loopback, shared memory disabled) on the same sizes, in the
# same run, interleaved round by round so that machine noise hits all
# three alike. Writes JSON lines to $OUT and prints the markdown table.
#
#   sh bench/anchors/run.sh            # from the repository root
#   ROUNDS=3 BUDGET=0.5 NPROCS="2 4" sh bench/anchors/run.sh
#
# Needs: go, /usr/bin/python3 with torch (python3-torch), mpicc/mpirun
# (apt-get install openmpi-bin libopenmpi-dev).
set -eu
OUT=${OUT:-/tmp/strand-anchors}
ROUNDS=${ROUNDS:-2}
NPROCS=${NPROCS:-"2 4"}
MIN=${MIN:-4K}
MAX=${MAX:-64M}
BUDGET=${BUDGET:-0.5}  # seconds of timed calls per size, for each implementation
rm -rf "$OUT"
mkdir -p "$OUT"
go build -o "$OUT/strand" ./cmd/strand
mpicc -O2 -o "$OUT/mpi_bench" bench/anchors/mpi_bench.c
bytes() { python3 -c "import sys; s=sys.argv[1].upper(); m={'K':1<<10,'M':1<<20,'G':1<<30}.get(s[-1],1); print(int(s[:-1] if m>1 else s)*m)" "$1"; }
MINB=$(bytes "$MIN")
MAXB=$(bytes "$MAX")
for round in $(seq 1 "$ROUNDS"); do
  for n in $NPROCS; do
    echo "round $round, $n ranks: strand" >&2
    "$OUT/strand" bench collective --op allreduce --nproc "$n" --min "$MIN" --max "$MAX" --factor 4 --budget "$BUDGET" --json >> "$OUT/strand-$n.jsonl"
    echo "round $round, $n ranks: gloo" >&2
    OMP_NUM_THREADS=1 /usr/bin/python3 bench/anchors/gloo_bench.py --nproc "$n" --min "$MIN" --max "$MAX" --factor 4 --budget "$BUDGET" >> "$OUT/gloo-$n.jsonl"
    echo "round $round, $n ranks: open mpi (tcp)" >&2
    mpirun --allow-run-as-root --oversubscribe -np "$n" --bind-to none \
      --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo \
      "$OUT/mpi_bench" "$MINB" "$MAXB" 4 "$BUDGET" >> "$OUT/mpi-$n.jsonl"
  done
done
/usr/bin/python3 bench/anchors/compare.py "$OUT"
