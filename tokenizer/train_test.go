package tokenizer

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/tokenizer/tokentest"
)

var (
	smallOnce sync.Once
	smallTok  *BPE
	smallErr  error
)

// trainSmall trains a 600-id tokenizer (with <|endoftext|>) on 60 kB of the
// mixed corpus, once per test binary.
func trainSmall(t testing.TB) *BPE {
	t.Helper()
	smallOnce.Do(func() {
		smallTok, smallErr = Train(context.Background(), bytes.NewReader(tokentest.Mixed(31, 60_000)), 600, DefaultTrainOptions())
	})
	if smallErr != nil {
		t.Fatalf("train: %v", smallErr)
	}
	return smallTok
}

// naiveMerges is the textbook trainer, recounting every pair before every
// merge; the incremental trainer must produce the same merge list (ties go
// to the smallest (left, right) id pair in both).
func naiveMerges(corpus string, special []string, vocabSize int) [][2]int {
	counts := map[string]int{}
	segs := []string{corpus}
	for _, s := range special {
		var next []string
		for _, seg := range segs {
			next = append(next, strings.Split(seg, s)...)
		}
		segs = next
	}
	for _, seg := range segs {
		splitPieces([]byte(seg), func(p []byte) { counts[string(p)]++ })
	}
	var words [][]int
	var freq []int
	for w, c := range counts {
		ids := make([]int, len(w))
		for i := range len(w) {
			ids[i] = int(w[i])
		}
		words = append(words, ids)
		freq = append(freq, c)
	}
	tokens := map[string]int{}
	names := []string{}
	for b := range 256 {
		tokens[string([]byte{byte(b)})] = b
		names = append(names, string([]byte{byte(b)}))
	}
	var merges [][2]int
	done := map[[2]int]bool{}
	for len(names) < vocabSize-len(special) {
		pc := map[[2]int]int{}
		for wi, w := range words {
			for i := 0; i+1 < len(w); i++ {
				pc[[2]int{w[i], w[i+1]}] += freq[wi]
			}
		}
		keys := make([][2]int, 0, len(pc))
		for k := range pc {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := keys[i], keys[j]
			if pc[a] != pc[b] {
				return pc[a] > pc[b]
			}
			if a[0] != b[0] {
				return a[0] < b[0]
			}
			return a[1] < b[1]
		})
		if len(keys) == 0 || pc[keys[0]] < 2 {
			break
		}
		best := keys[0]
		joined := names[best[0]] + names[best[1]]
		id, ok := tokens[joined]
		if !ok {
			id = len(names)
			tokens[joined] = id
			names = append(names, joined)
		}
		if !done[best] {
			done[best] = true
			merges = append(merges, best)
		}
		for wi, w := range words {
			var nw []int
			for i := 0; i < len(w); i++ {
				if i+1 < len(w) && w[i] == best[0] && w[i+1] == best[1] {
					nw = append(nw, id)
					i++
				} else {
					nw = append(nw, w[i])
				}
			}
			words[wi] = nw
		}
	}
	return merges
}

func TestTrainMatchesNaive(t *testing.T) {
	corpus := string(tokentest.Mixed(41, 15_000)) + "<|endoftext|>" + strings.Repeat("aaaa abab ", 30)
	opts := DefaultTrainOptions()
	tok, err := Train(context.Background(), strings.NewReader(corpus), 450, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := naiveMerges(corpus, opts.SpecialTokens, 450)
	if len(want) < 100 {
		t.Fatalf("reference learned only %d merges", len(want))
	}
	if tok.NumMerges() != len(want) {
		t.Fatalf("%d merges, reference %d", tok.NumMerges(), len(want))
	}
	for r, m := range want {
		if got := tok.mergeList[r]; int(got[0]) != m[0] || int(got[1]) != m[1] {
			t.Fatalf("merge %d: %v, reference %v", r, got, m)
		}
	}
}

func TestTrainedTokenizer(t *testing.T) {
	tok := trainSmall(t)
	if tok.VocabSize() != 600 {
		t.Fatalf("vocab %d, want 600", tok.VocabSize())
	}
	if id, ok := tok.SpecialID("<|endoftext|>"); !ok || id != 599 {
		t.Fatalf("<|endoftext|> id %d %v, want 599 (last)", id, ok)
	}
	for b := range 256 {
		if got, _ := tok.TokenBytes(b); len(got) != 1 || got[0] != byte(b) {
			t.Fatalf("id %d is %q, want the byte itself", b, got)
		}
	}
	text := tokentest.Mixed(31, 60_000)
	ids := tok.Encode(text)
	if len(ids)*3 > len(text)*2 {
		t.Errorf("%d tokens for %d bytes: 343 merges learned on this very text should cut it by a third", len(ids), len(text))
	}
	out, err := tok.Decode(ids)
	if err != nil || !bytes.Equal(out, text) {
		t.Fatalf("round trip failed: %v", err)
	}
	// No learned token spans the special token's text.
	for id := range 599 {
		if b, _ := tok.TokenBytes(id); bytes.Contains(b, []byte("<|endoftext|>")) {
			t.Fatalf("token %d %q contains the special text", id, b)
		}
	}
}

func TestTrainStopsWhenPairsRunOut(t *testing.T) {
	tok, err := Train(context.Background(), strings.NewReader("ab ab ab"), 1000, TrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Pieces "ab", " ab", " ab": merges (a,b) then (" ",ab); nothing repeats after.
	if tok.NumMerges() != 2 || tok.VocabSize() != 258 {
		t.Fatalf("merges %d vocab %d, want 2 and 258", tok.NumMerges(), tok.VocabSize())
	}
	if got := tok.Encode([]byte("ab ab")); !equalInts(got, []int{256, 257}) {
		t.Fatalf("Encode = %v, want [256 257]", got)
	}
}

func TestTrainErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Train(ctx, strings.NewReader("x"), 256, DefaultTrainOptions()); err == nil || !strings.Contains(err.Error(), "below 256") {
		t.Errorf("too small vocab: %v", err)
	}
	if _, err := Train(ctx, strings.NewReader("x"), 300, TrainOptions{SpecialTokens: []string{"<a>", "<a>"}}); err == nil {
		t.Error("duplicate special accepted")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Train(cancelled, strings.NewReader("abc abc"), 300, TrainOptions{}); err == nil {
		t.Error("cancelled context ignored")
	}
}
