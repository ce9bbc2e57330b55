// Package tokenizer turns text into token ids and back.
//
// Two tokenizers implement the Tokenizer interface:
//
//   - Bytes: one token per byte (id = byte value, vocabulary 256). No files,
//     useful for tests and tiny character-level models.
//
//   - BPE: GPT-2 style byte-level byte-pair encoding. Text is first split into
//     pre-tokens by a hand-written scanner equivalent to the GPT-2 regex
//
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
//     (see pretokenize.go), then each pre-token, as raw bytes, is merged pair by
//     pair following the learned merge list (lowest rank first). Special tokens
//     such as "<|endoftext|>" are recognised only by EncodeWithSpecial.
//
// Because the base alphabet is the 256 byte values, every byte string
// round-trips exactly: Decode(Encode(b)) == b, including invalid UTF-8 and NUL.
//
// Files: Load reads either the GPT-2 pair (vocab.json + merges.txt) or a
// Hugging Face tokenizer.json with a BPE model; (*BPE).Save writes both, so
// published GPT-2 files load here and files written here load in Hugging Face
// tokenizers. Train learns merges from a corpus with incremental pair counts.
//
// EncodeStream encodes an io.Reader of any size in bounded memory and gives the
// same ids as encoding the whole text at once.
package tokenizer
