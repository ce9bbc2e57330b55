// Package tokenizerbench measures strand's BPE encoder against tiktoken-go
// on the same text, in MB/s per core: r50k_base (GPT-2, hand-written
// pre-tokenizer) and cl100k_base (Llama 3's pattern, by the hand-written
// splitter and by regexp2), plus the SentencePiece-BPE test fixture
// (Llama 2's layout) with the GPT-2 figures as its anchor:
//
//	go test ./bench/tokenizer -run '^$' -bench . -cpu 1 -benchtime 3x
//
// The package holds only the benchmark (and a test that the two encoders
// agree on the benchmark text, so the comparison is like for like).
package tokenizerbench
