package tokenizer

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/tokenizer/tokentest"
)

var (
	cl100kOnce sync.Once
	cl100kTok  *BPE
	cl100kErr  error
)

// cl100k loads cl100k_base from a tokenizer.json in Llama 3's layout written
// from tiktoken-go's offline ranks (once per test binary).
func cl100k(t testing.TB) *BPE {
	t.Helper()
	cl100kOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cl100k")
		if err != nil {
			cl100kErr = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, HFTokenizerFile)
		if cl100kErr = tokentest.WriteCL100KTokenizerJSON(path); cl100kErr != nil {
			return
		}
		cl100kTok, cl100kErr = LoadHF(path)
	})
	if cl100kErr != nil {
		t.Fatalf("cl100k tokenizer: %v", cl100kErr)
	}
	return cl100kTok
}

// TestCL100KMatchesTiktoken: a tokenizer.json with cl100k's Split pattern
// (lookahead, case-insensitive contractions, 1-3 digit groups) and
// ignore_merges encodes token for token like tiktoken-go's cl100k_base on a
// mixed corpus, corner-case strings and long runs, with and without special
// tokens.
func TestCL100KMatchesTiktoken(t *testing.T) {
	tok := cl100k(t)
	enc, err := tokentest.CL100K()
	if err != nil {
		t.Fatal(err)
	}
	if tok.Kind() != KindByteLevel {
		t.Fatalf("kind %q", tok.Kind())
	}
	size := 300_000
	if testing.Short() || raceEnabled {
		size = 60_000
	}
	rng := rand.New(rand.NewPCG(15, 16))
	texts := []string{
		string(tokentest.Mixed(17, size)),
		strings.Repeat(" ", 1000) + "x",
		strings.Repeat("\n", 300) + " \n\r\n  \t\n",
		strings.Repeat("=-", 400) + "!",
		strings.Repeat("1234567", 50),
		"DON'T We'LL it'S I'M THEY'RE you'VE he'D",
		strings.Repeat("🎉", 100),
		"<|endoftext|>The end.<|endofprompt|><|fim_prefix|>x",
	}
	for range 3000 {
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
		back, err := tok.Decode(got)
		if err != nil || string(back) != s {
			t.Fatalf("round trip of %q: %q, %v", clip(s), clip(string(back)), err)
		}
	}
	if id, ok := tok.EOS(); !ok || id != 100257 {
		t.Errorf("EOS = %d, %v; want <|endoftext|> 100257", id, ok)
	}
}
