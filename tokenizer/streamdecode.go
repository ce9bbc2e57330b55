package tokenizer

// A StreamDecoder decodes ids one at a time, as a generator produces them.
// The concatenation of what Next returns equals Decode of all the ids so
// far: a SentencePiece decoder's Strip removes the leading space once, at
// the start of the stream, where decoding each id on its own would remove
// the space before every word. (A Strip of trailing characters, which no
// supported family uses, is not applied.) Not safe for concurrent use.
type StreamDecoder struct {
	tok Tokenizer
	// left is how many more leading strip characters may be removed; 0
	// once the stream has produced any other byte.
	left int
}

// NewStreamDecoder starts a stream of tok's ids.
func NewStreamDecoder(tok Tokenizer) *StreamDecoder {
	d := &StreamDecoder{tok: tok}
	if b, ok := tok.(*BPE); ok {
		d.left = b.stripStart
	}
	return d
}

// Next returns the bytes id adds to the text. An id outside the vocabulary
// is an error.
func (d *StreamDecoder) Next(id int) ([]byte, error) {
	b, ok := d.tok.(*BPE)
	if !ok {
		return d.tok.Decode([]int{id})
	}
	out, err := b.TokenBytes(id)
	if err != nil {
		return nil, err
	}
	for d.left > 0 && len(out) > 0 && out[0] == b.stripChar {
		out = out[1:]
		d.left--
	}
	if len(out) > 0 {
		d.left = 0
	}
	return out, nil
}
