// Package tokentest holds test helpers for package tokenizer and its
// benchmarks: a deterministic mixed-script corpus generator and the tiktoken
// r50k_base (GPT-2) oracle, including GPT-2 vocab.json/merges.txt files
// derived from its ranks.
//
// Only tests and benchmarks import it; the tokenizer itself has no
// dependency on tiktoken-go.
package tokentest
