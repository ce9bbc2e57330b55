// Package tokenizer turns text into token ids and back.
//
// Every tokenizer implements the Tokenizer interface (Encode, Decode,
// VocabSize, SpecialID, BOS, EOS):
//
//   - Bytes: one token per byte (id = byte value, vocabulary 256). No files,
//     useful for tests and tiny character-level models.
//
//   - *BPE, one type for every byte-pair-encoding kind (see Kind):
//
//     KindGPT2: byte-level BPE with GPT-2's pre-tokenizer, the expression
//
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
//     run by a hand-written scanner (pretokenize.go). GPT-2's files, files
//     Train writes, and tokenizer.json files declaring just that.
//
//     KindByteLevel: byte-level BPE behind another tokenizer.json pipeline:
//     Llama 3's and Qwen2's Split patterns (cl100k's family; a hand-written
//     splitter, any other pattern through regexp2, the engine tiktoken-go
//     uses, which has the lookahead Go's regexp lacks), SmolLM's Digits,
//     Qwen2's NFC, ignore_merges (Llama 3: a pre-token that is a token is
//     not merged).
//
//     KindSentencePiece: SentencePiece-style BPE (Llama 2, TinyLlama,
//     Mistral): initial symbols are characters, spaces become "▁" (Prepend +
//     Replace normalizers or the Metaspace pre-tokenizer), a character
//     missing from the vocabulary falls back to its bytes as <0xNN> tokens,
//     and Decode undoes it all (Replace, ByteFallback, Fuse, Strip).
//
// After its pre-tokenizer each piece is merged pair by pair following the
// learned merge list (lowest rank first, leftmost on ties). Both kinds
// round-trip every byte string: Decode(Encode(b)) == b, including invalid
// UTF-8 (a SentencePiece byte-fallback token decodes to its raw byte where
// Hugging Face prints U+FFFD).
//
// Added tokens. Encode treats special tokens ("<|endoftext|>", "<s>") as
// ordinary text, as tiktoken's encode_ordinary does, so text from the wild
// cannot inject them; added tokens that are not special are still matched
// whole. EncodeWithSpecial matches every added token as an atom (leftmost,
// longest first), Hugging Face's default. Neither adds BOS or EOS: callers
// put them where they want them.
//
// Files. LoadDir reads a directory: tokenizer.json when present (refusing
// component types it does not implement with an error naming them and the
// supported ones), else GPT-2's vocab.json + merges.txt, plus
// tokenizer_config.json's bos_token / eos_token. SaveDir writes vocab.json,
// merges.txt, tokenizer.json and tokenizer_config.json; a tokenizer.json
// that was loaded is written back unchanged. Fingerprint and Same compare
// tokenizers by what they do, whatever files they came from; PaddedVocab
// rounds a vocabulary up for the model's embedding. Train learns merges from
// a corpus with incremental pair counts.
//
// EncodeStream encodes an io.Reader of any size in bounded memory and gives the
// same ids as encoding the whole text at once (for pipelines whose cut
// points it can prove safe; others are read whole). StreamDecoder decodes
// ids one by one with the same result as Decode.
package tokenizer
