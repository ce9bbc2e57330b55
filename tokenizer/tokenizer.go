package tokenizer

import "fmt"

// Tokenizer maps bytes to token ids and back. Implementations are safe for
// concurrent use. Bytes and *BPE (every BPE kind: GPT-2, Hugging Face
// byte-level, SentencePiece-style) implement it; a stand-in can embed
// NoSpecials for the special-token methods.
type Tokenizer interface {
	// Encode splits text into token ids. It never fails: every byte string has
	// an encoding. Special-token text is encoded as ordinary text.
	Encode(text []byte) []int
	// Decode concatenates the bytes of ids. An id outside [0, VocabSize()) is
	// an error.
	Decode(ids []int) ([]byte, error)
	// VocabSize is the number of ids; valid ids are 0..VocabSize()-1.
	VocabSize() int
	// SpecialID returns the id of an added token by its text ("</s>").
	SpecialID(text string) (int, bool)
	// BOS and EOS return the begin- and end-of-sequence ids, if any.
	BOS() (int, bool)
	EOS() (int, bool)
}

// NoSpecials implements the special-token methods of Tokenizer for a
// tokenizer without special tokens.
type NoSpecials struct{}

// SpecialID reports that there is no such token.
func (NoSpecials) SpecialID(string) (int, bool) { return -1, false }

// BOS reports that there is no begin-of-sequence token.
func (NoSpecials) BOS() (int, bool) { return -1, false }

// EOS reports that there is no end-of-sequence token.
func (NoSpecials) EOS() (int, bool) { return -1, false }

// Bytes is the trivial byte-level tokenizer: token id = byte value, vocabulary
// size 256, no special tokens. The zero value is ready to use.
type Bytes struct{ NoSpecials }

var (
	_ Tokenizer = Bytes{}
	_ Tokenizer = (*BPE)(nil)
)

// Encode returns one id per byte.
func (Bytes) Encode(text []byte) []int {
	ids := make([]int, len(text))
	for i, b := range text {
		ids[i] = int(b)
	}
	return ids
}

// Decode returns the bytes with the given values; ids must be in [0, 256).
func (Bytes) Decode(ids []int) ([]byte, error) {
	out := make([]byte, len(ids))
	for i, id := range ids {
		if id < 0 || id > 255 {
			return nil, fmt.Errorf("decode: token id %d at position %d is outside the byte vocabulary [0, 256)", id, i)
		}
		out[i] = byte(id)
	}
	return out, nil
}

// VocabSize is 256.
func (Bytes) VocabSize() int { return 256 }

// Kind is KindBytes.
func (Bytes) Kind() string { return KindBytes }

// Open returns the tokenizer named by spec: "bytes" for Bytes, otherwise a
// path given to Load. It lets a command take one --tokenizer flag for both.
func Open(spec string) (Tokenizer, error) {
	if spec == "bytes" {
		return Bytes{}, nil
	}
	t, err := Load(spec)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// PaddedVocab rounds a vocabulary size n up to a multiple of m (64 in nanoGPT
// and Megatron), the size to give the model's embedding so its matrices
// tile evenly. The extra ids are never produced by the tokenizer.
func PaddedVocab(n, m int) int {
	if m <= 1 || n <= 0 {
		return n
	}
	return (n + m - 1) / m * m
}
