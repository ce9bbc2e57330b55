package tokenizer

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// FuzzRoundTrip: any bytes survive Encode/Decode and EncodeWithSpecial/Decode,
// and every id is in range. Run longer with
//
//	go test ./tokenizer -run '^$' -fuzz FuzzRoundTrip -fuzztime 60s
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "hello world", "\x00\xff\xfe", "it's  <|endoftext|>中文 👩‍💻", "\xed\xa0\x80", "   \n\n x"} {
		f.Add([]byte(s))
	}
	tok := trainSmall(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, ids := range [][]int{tok.Encode(in), tok.EncodeWithSpecial(in)} {
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("id %d out of range", id)
				}
			}
			out, err := tok.Decode(ids)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("round trip of %q gave %q, %v", in, out, err)
			}
		}
	})
}

// FuzzPretokenize: on valid UTF-8 the scanner agrees with the regexp
// reference.
func FuzzPretokenize(f *testing.F) {
	for _, s := range []string{"I'm here", "a   b", " \u3000x", "'re'''s", "12ab 3.5", "\t\n \u00a0y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip()
		}
		if got, want := pieces(s), referenceSplit(s); !equalStrings(got, want) {
			t.Fatalf("split(%q): %s", s, firstDiff(got, want))
		}
	})
}
