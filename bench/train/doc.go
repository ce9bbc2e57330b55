// Package train holds the training-throughput benchmark: run.sh trains the
// same presets with strand and with PyTorch (torch_train.py, the same
// GPT-2) on one machine, interleaved, and prints tokens/s and ratios for
// one process (1 and 2 threads) and data-parallel x2 (strand --nproc 2,
// PyTorch DDP over gloo). Results go to bench/RESULTS.md.
package train
