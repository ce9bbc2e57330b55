package tokenizer

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
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

// FuzzRoundTripKinds: any bytes survive Encode/Decode for the
// SentencePiece-style fixture (text holding the "▁" mark itself decodes to a
// space, as in Hugging Face, so it is skipped) and Encode and
// EncodeWithSpecial for cl100k in Llama 3's layout.
func FuzzRoundTripKinds(f *testing.F) {
	for _, s := range []string{"", " ", "hello  world\n", "\x00\xff\xfe", "it's <s></s> 中文 👩‍💻 龘", "\xed\xa0\x80", "   \n\n x", "<|endoftext|>12345"} {
		f.Add([]byte(s))
	}
	sp, err := LoadDir(spDir)
	if err != nil {
		f.Fatal(err)
	}
	cl := cl100k(f)
	check := func(t *testing.T, tok *BPE, in []byte, ids []int) {
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("id %d out of range", id)
			}
		}
		out, err := tok.Decode(ids)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("%s: round trip of %q gave %q, %v", tok.Kind(), in, out, err)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !bytes.Contains(in, []byte("▁")) {
			check(t, sp, in, sp.Encode(in))
		}
		check(t, cl, in, cl.Encode(in))
		check(t, cl, in, cl.EncodeWithSpecial(in))
	})
}

// FuzzCL100KSplit: the hand-written cl100k splitter agrees with regexp2 on
// any text (invalid UTF-8 included: both see U+FFFD per bad byte).
func FuzzCL100KSplit(f *testing.F) {
	for _, s := range []string{"I'M here", "a   b\r\n\n c", " \u3000x", "'re'''s", "1234567 ab", "\t\n \u00a0y", "\xff\xfex"} {
		f.Add(s)
	}
	re := regexp2.MustCompile(cl100kPattern, regexp2.None)
	slow, fast := regexSplit{re: re, behavior: behaviorIsolated}, cl100kSplit{maxDigits: 3}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := splitAll(fast, s), splitAll(slow, s); !equalStrings(got, want) {
			t.Fatalf("split(%q): %s", s, firstDiff(got, want))
		}
	})
}
