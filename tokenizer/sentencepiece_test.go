package tokenizer

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// spDir holds the SentencePiece-BPE fixtures written by
// testdata/gen_spbpe.py: a model trained by python3-sentencepiece with byte
// fallback, converted to a tokenizer.json in Llama 2's layout, and
// sentencepiece's own encodings of held-out text.
const spDir = "testdata/spbpe"

type spCase struct {
	Text   string   `json:"text"`
	IDs    []int    `json:"ids"`
	Pieces []string `json:"pieces"`
}

func spFixture(t *testing.T) (*BPE, []spCase) {
	t.Helper()
	tok, err := LoadDir(spDir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(spDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Cases []spCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Cases) < 100 {
		t.Fatalf("only %d cases", len(exp.Cases))
	}
	return tok, exp.Cases
}

// TestSentencePieceMatchesOracle: the Llama-2-layout tokenizer.json encodes
// held-out text (CJK in and out of the vocabulary, emoji, digits, whitespace
// runs, newlines) exactly as sentencepiece does, and decodes it back.
func TestSentencePieceMatchesOracle(t *testing.T) {
	tok, cases := spFixture(t)
	if tok.Kind() != KindSentencePiece {
		t.Fatalf("kind %q", tok.Kind())
	}
	fallback := 0
	for _, c := range cases {
		got := tok.Encode([]byte(c.Text))
		if !equalInts(got, c.IDs) {
			t.Fatalf("Encode(%q) differs from sentencepiece: %s (pieces %q)", clip(c.Text), firstIntDiff(got, c.IDs), c.Pieces)
		}
		if w := tok.EncodeWithSpecial([]byte(c.Text)); !strings.Contains(c.Text, "<") && !equalInts(w, got) {
			t.Fatalf("EncodeWithSpecial(%q) = %v, Encode %v", clip(c.Text), w, got)
		}
		back, err := tok.Decode(got)
		if err != nil || string(back) != c.Text {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", clip(c.Text), clip(string(back)), err)
		}
		for _, p := range c.Pieces {
			if _, ok := byteFallbackToken([]byte(p)); ok {
				fallback++
			}
		}
	}
	if fallback < 20 {
		t.Fatalf("only %d byte-fallback tokens in the cases; the fixture does not exercise byte fallback", fallback)
	}
	// Special tokens from tokenizer_config.json.
	if id, ok := tok.BOS(); !ok || id != 1 {
		t.Errorf("BOS = %d, %v; want <s> = 1", id, ok)
	}
	if id, ok := tok.EOS(); !ok || id != 2 {
		t.Errorf("EOS = %d, %v; want </s> = 2", id, ok)
	}
}

// TestSentencePieceAddedTokens: with added tokens atomic (Hugging Face's
// default) "<s>" is id 1 and the text after it is normalized on its own, so
// it gets the "▁" prefix again, as in Hugging Face's legacy Llama layout;
// Encode takes "<s>" as text.
func TestSentencePieceAddedTokens(t *testing.T) {
	tok, _ := spFixture(t)
	hello := tok.Encode([]byte("Hello"))
	got := tok.EncodeWithSpecial([]byte("<s>Hello</s>"))
	want := append(append([]int{1}, hello...), 2)
	if !equalInts(got, want) {
		t.Fatalf("EncodeWithSpecial = %v, want %v", got, want)
	}
	for _, id := range tok.Encode([]byte("<s>")) {
		if id == 1 {
			t.Fatalf("Encode matched <s> as a special token")
		}
	}
	text, err := tok.Decode(got)
	if err != nil || string(text) != "<s> Hello</s>" {
		t.Fatalf("Decode = %q, %v", text, err)
	}
}

// TestSentencePieceMetaspaceLayout: the same model in the newer layout
// (no normalizer, Metaspace pre-tokenizer with prepend_scheme "first",
// Metaspace decoder) encodes like sentencepiece wherever the two layouts
// agree: text that does not start with a space.
func TestSentencePieceMetaspaceLayout(t *testing.T) {
	_, cases := spFixture(t)
	tok := spMetaspace(t)
	n := 0
	for _, c := range cases {
		if c.Text == "" || c.Text[0] == ' ' {
			continue
		}
		n++
		got := tok.Encode([]byte(c.Text))
		if !equalInts(got, c.IDs) {
			t.Fatalf("Encode(%q) differs from sentencepiece: %s", clip(c.Text), firstIntDiff(got, c.IDs))
		}
		if back, err := tok.Decode(got); err != nil || string(back) != c.Text {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", clip(c.Text), back, err)
		}
	}
	if n < 100 {
		t.Fatalf("only %d cases compared", n)
	}
	// "first": after an added token no "▁" is prepended.
	if got, want := tok.EncodeWithSpecial([]byte("<s>x")), append([]int{1}, tok.Encode([]byte("x"))...); equalInts(got, want) {
		t.Fatalf("Metaspace first prepended after <s>: %v", got)
	}
}

// spMetaspace is the fixture's model in the newer Llama layout: no
// normalizer, a Metaspace pre-tokenizer with prepend_scheme "first", and a
// Metaspace decoder.
func spMetaspace(t *testing.T) *BPE {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(spDir, HFTokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["normalizer"] = nil
	doc["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	doc["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{
		map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
		map[string]any{"type": "ByteFallback"},
		map[string]any{"type": "Fuse"},
	}}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := parseHF(data)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestEncodeStreamOtherKinds: EncodeStream with tiny chunks gives Encode's
// ids for the SentencePiece and cl100k tokenizers too (the cuts follow
// their pipelines).
func TestEncodeStreamOtherKinds(t *testing.T) {
	sp, cases := spFixture(t)
	var sb strings.Builder
	for _, c := range cases {
		sb.WriteString(c.Text)
		sb.WriteString("\n")
	}
	spText := []byte(sb.String() + "<s>x</s>  y")
	for name, c := range map[string]struct {
		tok  *BPE
		text []byte
	}{
		"sentencepiece": {sp, spText},
		"cl100k":        {cl100k(t), []byte(string(spText) + "<|endoftext|>don't 12345")},
	} {
		for _, special := range []bool{false, true} {
			want := c.tok.Encode(c.text)
			if special {
				want = c.tok.EncodeWithSpecial(c.text)
			}
			for _, chunk := range []int{7, 64, 1000} {
				var got []int
				calls := 0
				r := iotest.HalfReader(bytes.NewReader(c.text))
				err := c.tok.encodeStream(context.Background(), r, special, chunk, func(ids []int) error {
					calls++
					got = append(got, ids...)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if !equalInts(got, want) {
					t.Fatalf("%s special=%v chunk %d: %s", name, special, chunk, firstIntDiff(got, want))
				}
				if chunk == 64 && calls < 10 {
					t.Fatalf("%s: only %d chunks: the input was not cut", name, calls)
				}
			}
		}
	}
}

// TestStreamDecoder: decoding id by id gives Decode's text for the
// SentencePiece tokenizer (whose Strip applies once) and for GPT-2, while
// Decode of each id alone would lose the spaces between SentencePiece words.
func TestStreamDecoder(t *testing.T) {
	sp, cases := spFixture(t)
	for name, tok := range map[string]*BPE{"sentencepiece": sp, "gpt2": gpt2(t)} {
		for _, c := range cases {
			ids := tok.EncodeWithSpecial([]byte(c.Text + "</s> after"))
			want, err := tok.Decode(ids)
			if err != nil {
				t.Fatal(err)
			}
			d := NewStreamDecoder(tok)
			var got []byte
			for _, id := range ids {
				b, err := d.Next(id)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, b...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: streamed %q, Decode %q", name, clip(string(got)), clip(string(want)))
			}
		}
		if _, err := NewStreamDecoder(tok).Next(tok.VocabSize()); err == nil {
			t.Errorf("%s: id outside the vocabulary decoded", name)
		}
	}
	ids := sp.Encode([]byte("two words"))
	var each []byte
	for _, id := range ids {
		b, _ := sp.Decode([]int{id})
		each = append(each, b...)
	}
	if string(each) != "twowords" {
		t.Fatalf("per-id Decode gave %q; the test no longer shows why StreamDecoder exists", each)
	}
}
