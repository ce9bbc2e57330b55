// Package train holds the training-throughput benchmarks: run.sh trains the
// same presets with strand and with PyTorch (torch_train.py, the same
// GPT-2) on one machine, interleaved, and prints tokens/s and ratios for
// one process (1 and 2 threads) and data-parallel x2 (strand --nproc 2,
// PyTorch DDP over gloo). step.py is the single-process training-step
// comparison per preset, thread count and precision (fp32, and bf16 against
// PyTorch's bf16 autocast), with CPU time and per-process peak RSS;
// membreak prints a step's designed memory (parameters, gradients,
// optimizer state, activations) and the peak RSS of a process that only
// trains. Results go to bench/RESULTS.md.
package train
