package tokenizer

import "fmt"

// Tokenizer maps bytes to token ids and back. Implementations are safe for
// concurrent use.
type Tokenizer interface {
	// Encode splits text into token ids. It never fails: every byte string has
	// an encoding.
	Encode(text []byte) []int
	// Decode concatenates the bytes of ids. An id outside [0, VocabSize()) is
	// an error.
	Decode(ids []int) ([]byte, error)
	// VocabSize is the number of ids; valid ids are 0..VocabSize()-1.
	VocabSize() int
}

// Bytes is the trivial byte-level tokenizer: token id = byte value, vocabulary
// size 256. The zero value is ready to use.
type Bytes struct{}

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
