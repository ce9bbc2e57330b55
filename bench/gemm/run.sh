#!/bin/sh
# Strand GEMM vs OpenBLAS SkylakeX (numpy) and torch 1.13, same run,
# interleaved, 1 and 2 threads. Run from anywhere; writes the table to
# stdout (paste into bench/RESULTS.md, section "GEMM"). Extra arguments go
# to the compare program, e.g. -filter gpt2s -rounds 7.
#
# Needs /usr/bin/python3 with numpy and torch (Debian python3-torch) and the
# OpenMP build of OpenBLAS (apt-get install -y libopenblas0-openmp).
set -eu
cd "$(dirname "$0")/../.."
export OPENBLAS_CORETYPE=SkylakeX
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
exec go run ./bench/gemm/compare "$@"
