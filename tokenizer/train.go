package tokenizer

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"sort"
)

// TrainOptions tunes Train. The zero value learns merges with no special
// tokens; DefaultTrainOptions adds GPT-2's "<|endoftext|>".
type TrainOptions struct {
	// SpecialTokens get the last ids, in this order. Their text never takes
	// part in merges: the corpus is split around them.
	SpecialTokens []string
	// MinPairCount stops training when the most frequent pair occurs fewer
	// times (default 2: a pair seen once is not worth a token).
	MinPairCount int
	// Progress, if set, is called now and then with the merges done so far
	// and the merges wanted.
	Progress func(done, want int)
}

// DefaultTrainOptions returns the options `strand tokenizer train` uses.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{SpecialTokens: []string{"<|endoftext|>"}, MinPairCount: 2}
}

// Train learns a byte-level BPE with vocabSize ids (256 bytes + merges +
// special tokens) from the text read from r. Ids 0..255 are the byte values,
// merges follow in the order learned, special tokens come last. If the corpus
// runs out of pairs worth merging the vocabulary is smaller than asked.
//
// Training is the classic algorithm with incremental counts: the corpus is
// reduced to its distinct pre-tokens with their counts; pair counts are kept
// in a map with a max-heap over them; a merge touches only the words that
// contain the pair (found through a per-pair word list), so each step costs
// in proportion to the pair's occurrences, not to the corpus.
func Train(ctx context.Context, r io.Reader, vocabSize int, opts TrainOptions) (*BPE, error) {
	if vocabSize < 256+len(opts.SpecialTokens) {
		return nil, fmt.Errorf("train: vocabulary size %d is below 256 bytes + %d special tokens", vocabSize, len(opts.SpecialTokens))
	}
	if vocabSize > 1<<30 {
		return nil, fmt.Errorf("train: vocabulary size %d is too large", vocabSize)
	}
	seen := map[string]bool{}
	for _, s := range opts.SpecialTokens {
		if s == "" {
			return nil, fmt.Errorf("train: empty special token")
		}
		if seen[s] {
			return nil, fmt.Errorf("train: special token %q listed twice", s)
		}
		seen[s] = true
	}
	minCount := int64(opts.MinPairCount)
	if minCount < 1 {
		minCount = 2
	}
	counts, err := countPieces(ctx, r, opts.SpecialTokens)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	tr := newTrainer(counts)
	want := vocabSize - 256 - len(opts.SpecialTokens)
	tokens := make([][]byte, 256, vocabSize)
	for b := range tokens {
		tokens[b] = []byte{byte(b)}
	}
	index := make(map[string]int32, vocabSize)
	for b := range 256 {
		index[string([]byte{byte(b)})] = int32(b)
	}
	var merges [][2]int
	merged := make(map[uint64]bool) // a pair can recur when a merge re-creates an existing token
	for len(tokens) < 256+want {
		if len(merges)%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
			if opts.Progress != nil {
				opts.Progress(len(tokens)-256, want)
			}
		}
		a, b, n, ok := tr.best()
		if !ok || n < minCount {
			break
		}
		joined := string(tokens[a]) + string(tokens[b])
		id, exists := index[joined]
		if !exists {
			id = int32(len(tokens))
			tokens = append(tokens, []byte(joined))
			index[joined] = id
		}
		if !merged[pairKey(a, b)] {
			merged[pairKey(a, b)] = true
			merges = append(merges, [2]int{int(a), int(b)})
		}
		tr.apply(a, b, id)
	}
	if opts.Progress != nil {
		opts.Progress(len(tokens)-256, want)
	}
	var special []int
	for _, s := range opts.SpecialTokens {
		special = append(special, len(tokens))
		tokens = append(tokens, []byte(s))
	}
	t, err := NewBPE(tokens, merges, special)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return t, nil
}

// countPieces reads the corpus and counts its distinct pre-tokens. Text is
// split around special tokens first, so no merge spans one.
func countPieces(ctx context.Context, r io.Reader, special []string) (map[string]int64, error) {
	counts := make(map[string]int64)
	splitter := &BPE{specialList: append([]string(nil), special...), special: map[string]int{}}
	sort.Slice(splitter.specialList, func(i, j int) bool { return len(splitter.specialList[i]) > len(splitter.specialList[j]) })
	err := forEachSafeChunk(ctx, r, special, cutRule{kind: cutClass}, streamChunk, func(text []byte) error {
		for len(text) > 0 {
			pos, tok, _ := splitter.nextAdded(text, true)
			seg := text
			if pos >= 0 {
				seg = text[:pos]
			}
			splitPieces(seg, func(p []byte) { counts[string(p)]++ })
			if pos < 0 {
				break
			}
			text = text[pos+len(tok):]
		}
		return nil
	})
	return counts, err
}

// trainer holds the corpus as distinct words (symbol sequences) with counts,
// and the pair statistics over them.
type trainer struct {
	words   [][]int32
	freq    []int64
	pairs   map[uint64]int64   // pair -> occurrences weighted by word count
	where   map[uint64][]int32 // pair -> words that contain (or once contained) it
	h       pairHeap
	stamp   []int32 // per word: last merge step that visited it
	step    int32
	delta   map[uint64]int64
	scratch []int32
}

func newTrainer(counts map[string]int64) *trainer {
	// Sort words so training is deterministic (map order is random).
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tr := &trainer{
		pairs: make(map[uint64]int64),
		where: make(map[uint64][]int32),
		delta: make(map[uint64]int64),
		stamp: make([]int32, len(keys)),
	}
	for wi, k := range keys {
		w := make([]int32, len(k))
		for i := range len(k) {
			w[i] = int32(k[i])
		}
		tr.words = append(tr.words, w)
		tr.freq = append(tr.freq, counts[k])
		for i := 0; i+1 < len(w); i++ {
			key := pairKey(w[i], w[i+1])
			tr.pairs[key] += counts[k]
			if l := tr.where[key]; len(l) == 0 || l[len(l)-1] != int32(wi) {
				tr.where[key] = append(l, int32(wi))
			}
		}
	}
	for key, n := range tr.pairs {
		tr.h = append(tr.h, pairCount{key: key, n: n})
	}
	heap.Init(&tr.h)
	return tr
}

// best returns the most frequent pair (ties: smallest left id, then right).
// Heap entries whose count is out of date are dropped: every change pushes
// a fresh entry, so the current count is always present.
func (tr *trainer) best() (a, b int32, n int64, ok bool) {
	for tr.h.Len() > 0 {
		top := tr.h[0]
		if cur := tr.pairs[top.key]; cur != top.n || cur <= 0 {
			heap.Pop(&tr.h)
			continue
		}
		return int32(top.key >> 32), int32(uint32(top.key)), top.n, true
	}
	return 0, 0, 0, false
}

// apply merges every occurrence of (a, b) into id, updating the pair counts
// of the affected words only.
func (tr *trainer) apply(a, b, id int32) {
	key := pairKey(a, b)
	tr.step++
	clear(tr.delta)
	for _, wi := range tr.where[key] {
		if tr.stamp[wi] == tr.step {
			continue
		}
		tr.stamp[wi] = tr.step
		w := tr.words[wi]
		found := false
		for i := 0; i+1 < len(w); i++ {
			if w[i] == a && w[i+1] == b {
				found = true
				break
			}
		}
		if !found {
			continue // stale entry: an earlier merge removed the pair
		}
		f := tr.freq[wi]
		for i := 0; i+1 < len(w); i++ {
			tr.delta[pairKey(w[i], w[i+1])] -= f
		}
		nw := tr.scratch[:0]
		for i := 0; i < len(w); i++ {
			if i+1 < len(w) && w[i] == a && w[i+1] == b {
				nw = append(nw, id)
				i++
			} else {
				nw = append(nw, w[i])
			}
		}
		// The word shrinks in place; its backing array is its own.
		w = append(w[:0], nw...)
		tr.words[wi] = w
		tr.scratch = nw
		for i := 0; i+1 < len(w); i++ {
			k := pairKey(w[i], w[i+1])
			tr.delta[k] += f
			if w[i] == id || w[i+1] == id {
				if l := tr.where[k]; len(l) == 0 || l[len(l)-1] != wi {
					tr.where[k] = append(l, wi)
				}
			}
		}
	}
	delete(tr.where, key)
	for k, d := range tr.delta {
		if d == 0 {
			continue
		}
		n := tr.pairs[k] + d
		if n <= 0 {
			delete(tr.pairs, k)
			continue
		}
		tr.pairs[k] = n
		heap.Push(&tr.h, pairCount{key: k, n: n})
	}
	// Every occurrence was merged, so the count is now zero; deleting it
	// outright also guarantees the same pair is never picked twice in a row.
	delete(tr.pairs, key)
}

type pairCount struct {
	key uint64
	n   int64
}

// pairHeap is a max-heap on count; ties go to the smaller pair key (left id,
// then right id) so training is deterministic.
type pairHeap []pairCount

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].n != h[j].n {
		return h[i].n > h[j].n
	}
	return h[i].key < h[j].key
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairCount)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
