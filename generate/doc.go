// Package generate produces text from a trained model: a sampler with
// Hugging Face generate's logits processors (temperature, then top-k, then
// top-p; greedy when the temperature is 0), seeded for reproducibility, and
// a generation loop over a model.KVCache that streams tokens to a callback
// as they are produced.
//
//	g := generate.New(m, tok)
//	res, err := g.Stream(ctx, "func main() {", generate.Options{MaxTokens: 100, Sampling: generate.Sampling{Temperature: 0.8, TopK: 40}, Seed: 1},
//		func(id int, text []byte) error { _, err := os.Stdout.Write(text); return err })
//
// Tokens offers the same as an iterator (for tok, err := range g.Tokens(...)).
//
// Text is handed out only in whole UTF-8 characters (a token may end inside
// one) and never as a partial stop string; what is held back at the end
// arrives in a final call with id NoToken.
package generate
