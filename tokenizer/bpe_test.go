package tokenizer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/tokenizer/tokentest"
)

var (
	gpt2Once sync.Once
	gpt2Tok  *BPE
	gpt2Dir  string
	gpt2Err  error
)

// gpt2 loads GPT-2's tokenizer from vocab.json + merges.txt files derived
// from the r50k ranks (once per test binary; the files stay in gpt2Dir).
func gpt2(t testing.TB) *BPE {
	t.Helper()
	gpt2Once.Do(func() {
		gpt2Dir, gpt2Err = os.MkdirTemp("", "gpt2-tokenizer")
		if gpt2Err != nil {
			return
		}
		if gpt2Err = tokentest.WriteGPT2Files(gpt2Dir); gpt2Err != nil {
			return
		}
		gpt2Tok, gpt2Err = Load(gpt2Dir)
	})
	if gpt2Err != nil {
		t.Fatalf("gpt2 tokenizer: %v", gpt2Err)
	}
	return gpt2Tok
}

func TestMain(m *testing.M) {
	code := m.Run()
	if gpt2Dir != "" {
		os.RemoveAll(gpt2Dir)
	}
	os.Exit(code)
}

func TestBytesTokenizer(t *testing.T) {
	in := []byte("a\x00\xff€")
	ids := Bytes{}.Encode(in)
	if len(ids) != len(in) || ids[1] != 0 || ids[2] != 255 {
		t.Fatalf("Encode(%q) = %v", in, ids)
	}
	out, err := Bytes{}.Decode(ids)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("Decode = %q, %v", out, err)
	}
	for _, bad := range []int{-1, 256} {
		if _, err := (Bytes{}).Decode([]int{1, bad}); err == nil || !strings.Contains(err.Error(), fmt.Sprint(bad)) {
			t.Errorf("Decode(%d) error = %v, want one naming the id", bad, err)
		}
	}
}

func TestGPT2Known(t *testing.T) {
	tok := gpt2(t)
	if tok.VocabSize() != 50257 || tok.NumMerges() != 50000 {
		t.Fatalf("vocab %d merges %d, want 50257 and 50000", tok.VocabSize(), tok.NumMerges())
	}
	if id, ok := tok.SpecialID(tokentest.EndOfText); !ok || id != 50256 {
		t.Fatalf("<|endoftext|> = %d %v, want 50256", id, ok)
	}
	// Well-known GPT-2 ids.
	if got := tok.Encode([]byte("Hello world")); fmt.Sprint(got) != "[15496 995]" {
		t.Errorf("Hello world = %v, want [15496 995]", got)
	}
	if got := tok.EncodeWithSpecial([]byte("hi<|endoftext|>")); fmt.Sprint(got) != "[5303 50256]" {
		t.Errorf("with special = %v, want [5303 50256]", got)
	}
	if got := tok.Encode([]byte("<|endoftext|>")); len(got) == 1 {
		t.Errorf("ordinary Encode turned the special text into %v", got)
	}
}

// TestMatchesTiktoken compares with tiktoken-go's r50k_base token for token:
// a mixed corpus (code, prose, CJK, emoji, whitespace runs), random strings
// dense in corner cases, and long runs that take the heap merge path.
func TestMatchesTiktoken(t *testing.T) {
	tok := gpt2(t)
	enc, err := tokentest.R50K()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	texts := []string{
		string(tokentest.Mixed(11, 100_000)),
		strings.Repeat(" ", 1000) + "x",
		strings.Repeat("\n", 300),
		strings.Repeat("=-", 400) + "!",
		strings.Repeat("ab", 500),
		strings.Repeat("🎉", 100),
		"<|endoftext|>The end.<|endoftext|><|endoftext|>",
	}
	for range 1500 {
		texts = append(texts, tokentest.RandomText(rng, 20))
	}
	for _, s := range texts {
		got, want := tok.Encode([]byte(s)), enc.EncodeOrdinary(s)
		if !equalInts(got, want) {
			t.Fatalf("Encode differs from tiktoken on %q: %s", clip(s), firstIntDiff(got, want))
		}
		got, want = tok.EncodeWithSpecial([]byte(s)), enc.Encode(s, []string{"all"}, nil)
		if !equalInts(got, want) {
			t.Fatalf("EncodeWithSpecial differs from tiktoken on %q: %s", clip(s), firstIntDiff(got, want))
		}
	}
}

// TestRoundTrip: Decode(Encode(b)) == b for any bytes, including invalid
// UTF-8, NUL, emoji and CJK.
func TestRoundTrip(t *testing.T) {
	tok := gpt2(t)
	rng := rand.New(rand.NewPCG(7, 8))
	inputs := [][]byte{
		nil,
		[]byte("\x00\x00\x00"),
		[]byte("\xff\xfe\xc3(\xe2\x82"),     // invalid and truncated sequences
		[]byte("ok \xed\xa0\x80 surrogate"), // encoded surrogate half
		[]byte("👩‍💻 中文 日本語 한국어 \x00 <|endoftext|>"),
		tokentest.Mixed(3, 5000),
	}
	for range 500 {
		b := make([]byte, rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		for name, ids := range map[string][]int{"Encode": tok.Encode(in), "EncodeWithSpecial": tok.EncodeWithSpecial(in)} {
			out, err := tok.Decode(ids)
			if err != nil {
				t.Fatalf("%s(%q): decode: %v", name, in, err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("%s(%q) round-trips to %q", name, in, out)
			}
		}
	}
}

func TestDecodeUnknownID(t *testing.T) {
	tok := gpt2(t)
	for _, bad := range []int{-1, 50257, 1 << 40} {
		_, err := tok.Decode([]int{15496, bad})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(bad)) || !strings.Contains(err.Error(), "position 1") {
			t.Errorf("Decode with id %d: error %v, want one naming the id and position", bad, err)
		}
	}
}

// TestHeapMergeMatchesScan: the O(n log n) merge used for long pre-tokens
// agrees with the simple scan on every piece of a corpus.
func TestHeapMergeMatchesScan(t *testing.T) {
	tok := gpt2(t)
	text := tokentest.Mixed(13, 30000)
	n := 0
	splitPieces(text, func(p []byte) {
		if len(p) < 2 || len(p) > 64 {
			return
		}
		n++
		ids := make([]int32, len(p))
		for i, c := range p {
			ids[i] = tok.byteID[c]
		}
		if a, b := tok.mergePiece(p), tok.mergeHeap(ids); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("piece %q: scan %v, heap %v", p, a, b)
		}
	})
	if n < 1000 {
		t.Fatalf("only %d pieces compared", n)
	}
}

func TestConcurrentEncode(t *testing.T) {
	sp, err := LoadDir(spDir)
	if err != nil {
		t.Fatal(err)
	}
	// A regexp2 Split (cl100k's pattern in a group, so the hand-written
	// splitter does not take it) shares its compiled expression too.
	doc := strings.Replace(string(qwen2Like(t).raw), `"Regex":"`, `"Regex":"(?:`, 1)
	doc = strings.Replace(doc, `\\s+"}`, `\\s+)"}`, 1)
	rx, err := parseHF([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rx.pipe.stages[0].(regexSplit); !ok {
		t.Fatalf("stage %T, want the regexp2 splitter", rx.pipe.stages[0])
	}
	text := tokentest.Mixed(17, 20000)
	for name, tok := range map[string]*BPE{"gpt2": gpt2(t), "sentencepiece": sp, "regexp2": rx} {
		want := tok.EncodeWithSpecial(text)
		var wg sync.WaitGroup
		errs := make(chan string, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got := tok.EncodeWithSpecial(text); !equalInts(got, want) {
					errs <- name + ": " + firstIntDiff(got, want)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}

func equalInts(a, b []int) bool {
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

func firstIntDiff(got, want []int) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-3)
	return fmt.Sprintf("at token %d of %d/%d: got %v, want %v", i, len(got), len(want), got[lo:min(len(got), i+3)], want[lo:min(len(want), i+3)])
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func TestOpen(t *testing.T) {
	gpt2(t) // writes the files into gpt2Dir
	b, err := Open("bytes")
	if err != nil || b.VocabSize() != 256 {
		t.Fatalf("Open(bytes) = %v, %v", b, err)
	}
	g, err := Open(gpt2Dir)
	if err != nil || g.VocabSize() != 50257 {
		t.Fatalf("Open(gpt2 dir) = %v, %v", g, err)
	}
	if _, err := Open(gpt2Dir + "/missing"); err == nil {
		t.Fatal("Open of a missing dir succeeded")
	}
}
