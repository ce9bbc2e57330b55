package tokenizer

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
	"github.com/strand-ml/strand/tokenizer/tokentest"
)

func splitAll(s splitter, text string) []string {
	var out []string
	s.split([]byte(text), func(p []byte) { out = append(out, string(p)) })
	return out
}

// TestCL100KSplitMatchesRegexp2: the hand-written cl100k and Qwen2
// splitters give regexp2's pieces (the engine tiktoken-go runs the same
// patterns with) on the mixed corpus, corner-case strings, invalid UTF-8,
// and every character of the Basic Multilingual Plane in the contexts the
// pattern distinguishes.
func TestCL100KSplitMatchesRegexp2(t *testing.T) {
	if tokentest.CL100KPattern != cl100kPattern || tokentest.Qwen2Pattern != qwen2Pattern {
		t.Fatal("tokentest's patterns and the recognised ones differ")
	}
	rng := rand.New(rand.NewPCG(21, 22))
	texts := []string{string(tokentest.Mixed(23, 50_000)), "a\xffb \xff\xfe\n\xff", "'S'T'RE'Ve'M'LL'D 'x 're", "\r\n\r\n  \r \n\t\n x"}
	for range 3000 {
		texts = append(texts, tokentest.RandomText(rng, 16))
	}
	step := 1
	if testing.Short() || raceEnabled {
		step = 11
	}
	for r := rune(0); r < 0x10000; r += rune(step) {
		c := string(r)
		texts = append(texts, "a"+c+"b "+c+c+"1"+c+"\n"+c+" "+c+"'"+c)
	}
	for _, pat := range []string{cl100kPattern, qwen2Pattern} {
		re, err := regexp2.Compile(pat, regexp2.None)
		if err != nil {
			t.Fatal(err)
		}
		slow, fast := regexSplit{re: re, behavior: behaviorIsolated}, newRegexSplitter(pat, behaviorIsolated)
		if fast == nil {
			t.Fatalf("no hand-written splitter for %s", pat)
		}
		for _, s := range texts {
			want, got := splitAll(slow, s), splitAll(fast, s)
			if !equalStrings(got, want) {
				t.Fatalf("pattern %s on %q: %s", pat, clip(s), firstDiff(got, want))
			}
		}
	}
}

// TestSplitBehaviors: the Split and Digits pre-tokenizers on the examples of
// Hugging Face's documentation.
func TestSplitBehaviors(t *testing.T) {
	re := regexp2.MustCompile(regexp2.Escape("-"), regexp2.None)
	for behavior, want := range map[string][]string{
		behaviorRemoved:            {"the", "final", "countdown"},
		behaviorIsolated:           {"the", "-", "final", "-", "-", "countdown"},
		behaviorMergedWithPrevious: {"the-", "final-", "-", "countdown"},
		behaviorMergedWithNext:     {"the", "-final", "-", "-countdown"},
	} {
		if got := splitAll(regexSplit{re: re, behavior: behavior}, "the-final--countdown"); !equalStrings(got, want) {
			t.Errorf("%s: %q, want %q", behavior, got, want)
		}
	}
	if got := splitAll(digits{individual: true}, "Call 123 please"); !equalStrings(got, []string{"Call ", "1", "2", "3", " please"}) {
		t.Errorf("digits individual: %q", got)
	}
	if got := splitAll(digits{}, "Call 123 please٣"); !equalStrings(got, []string{"Call ", "123", " please", "٣"}) {
		t.Errorf("digits: %q", got)
	}
	if got := splitAll(byteLevel{prefixSpace: true, useRegex: true}, "hi there"); !equalStrings(got, []string{" hi", " there"}) {
		t.Errorf("byte-level with prefix space: %q", got)
	}
	if got := splitAll(markSplit{mark: []byte("▁")}, "▁▁a▁▁b▁c"); !equalStrings(got, []string{"▁▁a", "▁▁b", "▁c"}) {
		t.Errorf("mark split: %q", got)
	}
}

// TestMarkSplitOnlyWhenSafe: the word-mark split (and the stream cut before
// a space) is used only when no token has a mark after another character.
func TestMarkSplitOnlyWhenSafe(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(spDir, HFTokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	safe, err := parseHF(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Give the unused id of a rare piece to "a▁b" (a token spanning a word
	// boundary), merged from "a" + "▁b" if both exist.
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	model := doc["model"].(map[string]any)
	vocab := model["vocab"].(map[string]any)
	if vocab["a"] == nil || vocab["▁b"] == nil {
		t.Fatal("fixture lacks a and ▁b")
	}
	vocab["a▁b"] = float64(len(vocab))
	model["merges"] = append([]any{"a ▁b"}, model["merges"].([]any)...)
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	unsafe, err := parseHF(data)
	if err != nil {
		t.Fatal(err)
	}
	hasMarkSplit := func(tok *BPE) bool {
		for _, s := range tok.pipe.stages {
			if _, ok := s.(markSplit); ok {
				return true
			}
		}
		return false
	}
	if !hasMarkSplit(safe) || safe.pipe.cut.kind != cutSpace {
		t.Fatalf("fixture: mark split %v, cut %d", hasMarkSplit(safe), safe.pipe.cut.kind)
	}
	if hasMarkSplit(unsafe) || unsafe.pipe.cut.kind != cutNone {
		t.Fatalf("with a▁b: mark split %v, cut %d", hasMarkSplit(unsafe), unsafe.pipe.cut.kind)
	}
	id := unsafe.VocabSize() - 1
	if got := unsafe.Encode([]byte("a b")); len(got) != 2 || got[1] != id {
		t.Fatalf("Encode(a b) = %v, want [▁ a▁b=%d]", got, id)
	}
}

// smolLMLike is GPT-2's vocabulary behind SmolLM's pre-tokenizer.
func smolLMLike(t *testing.T) *BPE {
	t.Helper()
	doc := strings.Replace(string(gpt2(t).hfJSON()),
		`"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`,
		`"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}`, 1)
	tok, err := parseHF([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestSmolLMLayout: Digits(individual) before GPT-2's ByteLevel split (the
// SmolLM layout) encodes every digit on its own and otherwise like GPT-2.
func TestSmolLMLayout(t *testing.T) {
	g, tok := gpt2(t), smolLMLike(t)
	if tok.Kind() != KindByteLevel {
		t.Fatalf("kind %q", tok.Kind())
	}
	var want []int
	for _, p := range []string{"in", " ", "2", "0", "2", "6", ",", " the", " model"} {
		want = append(want, g.Encode([]byte(p))...)
	}
	if got := tok.Encode([]byte("in 2026, the model")); !equalInts(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
}

// qwen2Like is GPT-2's vocabulary behind Qwen2's pipeline: NFC, the Qwen2
// Split pattern, ByteLevel without its own regex.
func qwen2Like(t *testing.T) *BPE {
	t.Helper()
	g := gpt2(t)
	pre, err := json.Marshal(map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": tokentest.Qwen2Pattern}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
	}})
	if err != nil {
		t.Fatal(err)
	}
	doc := string(g.hfJSON())
	for from, to := range map[string]string{
		`"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`: `"pre_tokenizer": ` + string(pre),
		`"normalizer": null`: `"normalizer": {"type": "NFC"}`,
	} {
		if !strings.Contains(doc, from) {
			t.Fatalf("no %s in GPT-2's tokenizer.json", from)
		}
		doc = strings.Replace(doc, from, to, 1)
	}
	tok, err := parseHF([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestQwen2Layout: NFC composes before splitting (a decomposed accent
// encodes like the composed one), digits are single pieces, and EncodeStream
// cuts only where composition cannot reach across.
func TestQwen2Layout(t *testing.T) {
	tok := qwen2Like(t)
	if tok.Kind() != KindByteLevel {
		t.Fatalf("kind %q", tok.Kind())
	}
	if a, b := tok.Encode([]byte("cafe\u0301 Ame\u0301lie")), tok.Encode([]byte("café Amélie")); !equalInts(a, b) {
		t.Fatalf("decomposed %v, composed %v", a, b)
	}
	g := gpt2(t)
	var want []int
	for _, p := range []string{"in", " ", "2", "0", "2", "6"} {
		want = append(want, g.Encode([]byte(p))...)
	}
	if got := tok.Encode([]byte("in 2026")); !equalInts(got, want) {
		t.Fatalf("Encode(in 2026) = %v, want %v", got, want)
	}
	text := []byte(strings.Repeat("cafe\u0301 naï\u0308ve 12345 x\u0301y. ", 40) + string(tokentest.Mixed(3, 5000)))
	want = tok.Encode(text)
	var got []int
	if err := tok.encodeStream(context.Background(), bytes.NewReader(text), false, 16, func(ids []int) error {
		got = append(got, ids...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !equalInts(got, want) {
		t.Fatalf("stream: %s", firstIntDiff(got, want))
	}
}

// TestIgnoreMerges: with ignore_merges (Llama 3) a pre-token that is itself
// a token is that token, even where the merges would not build it.
func TestIgnoreMerges(t *testing.T) {
	tokens := make([][]byte, 256, 259)
	for b := range tokens {
		tokens[b] = []byte{byte(b)}
	}
	tokens = append(tokens, []byte("bc"), []byte("ab"), []byte("abc"))
	base, err := NewBPE(tokens, [][2]int{{'b', 'c'}, {'a', 'b'}, {257, 'c'}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := base.Encode([]byte("abc")); !equalInts(got, []int{'a', 256}) {
		t.Fatalf("merges alone: %v, want [a bc]", got)
	}
	doc := strings.Replace(string(base.hfJSON()), `"byte_fallback": false,`, `"byte_fallback": false, "ignore_merges": true,`, 1)
	tok, err := parseHF([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode([]byte("abc.abc abc")); !equalInts(got, []int{258, '.', 258, ' ', 'a', 256}) {
		t.Fatalf("ignore_merges: %v", got)
	}
	if Same(base, tok) {
		t.Fatal("ignore_merges does not change the fingerprint")
	}
}
