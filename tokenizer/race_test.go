//go:build race

package tokenizer

// raceEnabled lets the heaviest oracle comparisons sample less under the
// race detector (which slows regexp2 and tiktoken-go about tenfold); the
// full sweeps run in the ordinary test run.
const raceEnabled = true
