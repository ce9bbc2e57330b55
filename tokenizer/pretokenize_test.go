package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"github.com/strand-ml/strand/tokenizer/tokentest"
)

// gpt2Pattern is the GPT-2 pre-tokenizer expression, as in tiktoken's r50k_base.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// refHead is every alternative of gpt2Pattern except the two whitespace
// ones, anchored; Go's regexp is leftmost-first like the original engine.
// Go's \s is ASCII-only, so the Unicode space class is spelled out.
var refHead = regexp.MustCompile(`^(?:'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{L}\p{N}` + uniSpaceClass + `]+)`)

// uniSpaceClass is unicode.IsSpace as a character-class body.
var uniSpaceClass = func() string {
	var sb strings.Builder
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if unicode.IsSpace(r) {
			sb.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	return sb.String()
}()

// referenceSplit is an independent, regexp2-free implementation of the
// pattern: the head alternatives by Go's regexp, then "\s+(?!\S)|\s+" by
// its definition (take the whole run if it ends the text or is a single
// character, else all but its last character).
func referenceSplit(s string) []string {
	var out []string
	for len(s) > 0 {
		if m := refHead.FindString(s); m != "" {
			out = append(out, m)
			s = s[len(m):]
			continue
		}
		n := 0
		var runes []int
		for n < len(s) {
			r, w := utf8.DecodeRuneInString(s[n:])
			if !unicode.IsSpace(r) {
				break
			}
			runes = append(runes, n)
			n += w
		}
		if n == 0 {
			panic("reference: no alternative matched " + s)
		}
		if n < len(s) && len(runes) > 1 {
			n = runes[len(runes)-1]
		}
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

func pieces(s string) []string {
	var out []string
	splitPieces([]byte(s), func(p []byte) { out = append(out, string(p)) })
	return out
}

func TestPretokenizeExamples(t *testing.T) {
	cases := map[string][]string{
		"Hello world":       {"Hello", " world"},
		"I'm here, they're": {"I", "'m", " here", ",", " they", "'re"},
		"a   b":             {"a", "  ", " b"},
		"a \n\n b":          {"a", " \n\n", " b"},
		"x\n\ny":            {"x", "\n", "\n", "y"},
		"end   ":            {"end", "   "},
		"abc123 456":        {"abc", "123", " 456"},
		" ?!x":              {" ?!", "x"},
		"'x 's":             {"'", "x", " '", "s"},
		"中文。test":           {"中文", "。", "test"},
		"\t\tfoo":           {"\t", "\t", "foo"},
		"don'T":             {"don", "'", "T"},
		"":                  nil,
	}
	for in, want := range cases {
		if got := pieces(in); strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("split(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPretokenizeMatchesReference checks the hand-written scanner against
// the regexp reference and against the regexp2 engine tiktoken-go uses, on
// many random strings dense in corner cases and on the mixed corpus.
func TestPretokenizeMatchesReference(t *testing.T) {
	re2 := regexp2.MustCompile(gpt2Pattern, regexp2.None)
	viaRegexp2 := func(s string) []string {
		var out []string
		m, _ := re2.FindStringMatch(s)
		for m != nil {
			out = append(out, m.String())
			m, _ = re2.FindNextMatch(m)
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := []string{string(tokentest.Mixed(7, 20000))}
	for range 3000 {
		inputs = append(inputs, tokentest.RandomText(rng, 24))
	}
	for _, s := range inputs {
		got := pieces(s)
		if want := referenceSplit(s); !equalStrings(got, want) {
			t.Fatalf("split differs from the reference: %s", firstDiff(got, want))
		}
		if want := viaRegexp2(s); !equalStrings(got, want) {
			t.Fatalf("split differs from regexp2: %s", firstDiff(got, want))
		}
	}
}

// TestPretokenizeKeepsEveryByte: on arbitrary bytes (invalid UTF-8, NUL)
// the pieces are non-empty and concatenate back to the input.
func TestPretokenizeKeepsEveryByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		var joined []byte
		splitPieces(b, func(p []byte) {
			if len(p) == 0 {
				t.Fatalf("empty piece in %q", b)
			}
			joined = append(joined, p...)
		})
		if string(joined) != string(b) {
			t.Fatalf("pieces of %q join to %q", b, joined)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// firstDiff describes the first difference between two piece lists, with a
// little context, so a failure on a long text stays readable.
func firstDiff(got, want []string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-3)
	return fmt.Sprintf("at piece %d: got %q, want %q", i, got[lo:min(len(got), i+3)], want[lo:min(len(want), i+3)])
}
