// Package tokenizerbench measures strand's BPE encoder against tiktoken-go
// (r50k_base, GPT-2) on the same text, in MB/s per core:
//
//	go test ./bench/tokenizer -run '^$' -bench . -cpu 1 -benchtime 3x
//
// The package holds only the benchmark (and a test that the two encoders
// agree on the benchmark text, so the comparison is like for like).
package tokenizerbench
