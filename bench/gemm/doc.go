// Package gemmbench benchmarks strand's GEMM on the shapes training really
// runs (every preset's linear layers, forward and backward, the LM head and
// the attention products) and on 1024^3, and compares it with OpenBLAS.
//
//   - go test -bench . ./bench/gemm/ : Go benchmarks, strand alone.
//   - bench/gemm/run.sh : strand vs OpenBLAS (numpy) and torch 1.13, same
//     run, interleaved round by round, 1 and 2 threads; prints the markdown
//     table kept in bench/RESULTS.md (section "GEMM").
package gemmbench
