package tokenizer

import (
	"bytes"
	"container/heap"
	"fmt"
	"sort"
	"sync"
)

// BPE is a byte-level byte-pair-encoding tokenizer (GPT-2 style). It is
// immutable after construction and safe for concurrent use.
type BPE struct {
	// tokens[id] is the raw byte string of token id (len = VocabSize()).
	tokens [][]byte
	// byteID[b] is the id of the single-byte token b.
	byteID [256]int32
	// merges maps a pair key (left<<32 | right) to its rank (position in
	// the merge list, lower merges first) and the id it merges into.
	merges map[uint64]merge
	// mergeList keeps the merges in rank order, for Save.
	mergeList [][2]int32
	// special maps special-token text to its id; specialList holds the same
	// texts, longest first, for matching.
	special     map[string]int
	specialList []string
	isSpecial   []bool // by id

	// cache holds per-pre-token encodings; each pooled value is owned by one
	// goroutine at a time, so no locking on the hot path.
	cache sync.Pool
}

type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// maxCacheEntries bounds each per-goroutine pre-token cache; a full cache is
// dropped rather than managed (hit rates on natural text stay high).
const maxCacheEntries = 1 << 16

type encodeState struct {
	cache map[string][]int32
}

// NewBPE builds a tokenizer from its parts:
//   - tokens[id] is the raw byte string of each id; every single byte 0..255
//     must be one of them, and no two ids may share a byte string.
//   - merges lists (left, right) id pairs in rank order; tokens[left]+tokens[right]
//     must itself be a token.
//   - special lists the ids that are special tokens (matched as whole strings
//     by EncodeWithSpecial, never produced by merges).
func NewBPE(tokens [][]byte, merges [][2]int, special []int) (*BPE, error) {
	t := &BPE{
		tokens:    make([][]byte, len(tokens)),
		merges:    make(map[uint64]merge, len(merges)),
		mergeList: make([][2]int32, len(merges)),
		special:   make(map[string]int, len(special)),
		isSpecial: make([]bool, len(tokens)),
	}
	if len(tokens) > 1<<31-1 {
		return nil, fmt.Errorf("vocabulary of %d tokens is too large", len(tokens))
	}
	for _, id := range special {
		if id < 0 || id >= len(tokens) {
			return nil, fmt.Errorf("special token id %d outside vocabulary of %d", id, len(tokens))
		}
		if len(tokens[id]) == 0 {
			return nil, fmt.Errorf("special token id %d is empty", id)
		}
		t.isSpecial[id] = true
		t.special[string(tokens[id])] = id
		t.specialList = append(t.specialList, string(tokens[id]))
	}
	sort.Slice(t.specialList, func(i, j int) bool {
		a, b := t.specialList[i], t.specialList[j]
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	index := make(map[string]int32, len(tokens))
	for id, tok := range tokens {
		if len(tok) == 0 {
			return nil, fmt.Errorf("token id %d has an empty byte string", id)
		}
		t.tokens[id] = append([]byte(nil), tok...)
		if t.isSpecial[id] {
			continue // special texts may coincide with ordinary strings
		}
		if prev, dup := index[string(tok)]; dup {
			return nil, fmt.Errorf("token ids %d and %d have the same bytes %q", prev, id, tok)
		}
		index[string(tok)] = int32(id)
		if len(tok) == 1 {
			t.byteID[tok[0]] = int32(id)
		}
	}
	for b, id := range t.byteID {
		if id < 0 {
			return nil, fmt.Errorf("vocabulary has no token for byte 0x%02x; a byte-level BPE needs all 256", b)
		}
	}
	for r, m := range merges {
		a, b := m[0], m[1]
		if a < 0 || a >= len(tokens) || b < 0 || b >= len(tokens) {
			return nil, fmt.Errorf("merge %d (%d, %d): id outside vocabulary of %d", r, a, b, len(tokens))
		}
		if t.isSpecial[a] || t.isSpecial[b] {
			return nil, fmt.Errorf("merge %d (%d, %d) uses a special token", r, a, b)
		}
		joined := string(tokens[a]) + string(tokens[b])
		id, ok := index[joined]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q + %q): result %q is not in the vocabulary", r, tokens[a], tokens[b], joined)
		}
		key := pairKey(int32(a), int32(b))
		if _, dup := t.merges[key]; dup {
			return nil, fmt.Errorf("merge %d (%q + %q) is listed twice", r, tokens[a], tokens[b])
		}
		t.merges[key] = merge{rank: int32(r), id: id}
		t.mergeList[r] = [2]int32{int32(a), int32(b)}
	}
	t.cache.New = func() any { return &encodeState{cache: make(map[string][]int32)} }
	return t, nil
}

// VocabSize is the number of token ids, special tokens included.
func (t *BPE) VocabSize() int { return len(t.tokens) }

// NumMerges is the length of the merge list.
func (t *BPE) NumMerges() int { return len(t.mergeList) }

// TokenBytes returns the raw bytes of id (a copy), or an error for an unknown id.
func (t *BPE) TokenBytes(id int) ([]byte, error) {
	if id < 0 || id >= len(t.tokens) {
		return nil, fmt.Errorf("token id %d outside vocabulary of %d", id, len(t.tokens))
	}
	return append([]byte(nil), t.tokens[id]...), nil
}

// SpecialID returns the id of a special token such as "<|endoftext|>".
func (t *BPE) SpecialID(text string) (int, bool) {
	id, ok := t.special[text]
	return id, ok
}

// SpecialTokens returns the special token texts, sorted.
func (t *BPE) SpecialTokens() []string {
	out := append([]string(nil), t.specialList...)
	sort.Strings(out)
	return out
}

// Encode encodes text as ordinary text: special-token strings such as
// "<|endoftext|>" are split like any other text (tiktoken's encode_ordinary).
func (t *BPE) Encode(text []byte) []int {
	st := t.cache.Get().(*encodeState)
	defer t.cache.Put(st)
	out := make([]int, 0, len(text)/3+1)
	return t.appendOrdinary(st, out, text)
}

// EncodeWithSpecial encodes text and turns every occurrence of a special
// token's text into that token's id (leftmost match, longest first).
func (t *BPE) EncodeWithSpecial(text []byte) []int {
	st := t.cache.Get().(*encodeState)
	defer t.cache.Put(st)
	out := make([]int, 0, len(text)/3+1)
	return t.appendWithSpecial(st, out, text)
}

func (t *BPE) appendWithSpecial(st *encodeState, out []int, text []byte) []int {
	for len(text) > 0 {
		pos, tok := t.nextSpecial(text)
		if pos < 0 {
			return t.appendOrdinary(st, out, text)
		}
		out = t.appendOrdinary(st, out, text[:pos])
		out = append(out, t.special[tok])
		text = text[pos+len(tok):]
	}
	return out
}

// nextSpecial finds the leftmost special token in text (longest on ties),
// returning its offset and text, or -1.
func (t *BPE) nextSpecial(text []byte) (int, string) {
	best, bestTok := -1, ""
	for _, s := range t.specialList {
		limit := text
		if best >= 0 {
			limit = text[:min(len(text), best+len(s))]
		}
		p := bytes.Index(limit, []byte(s))
		if p >= 0 && (best < 0 || p < best) {
			best, bestTok = p, s
		}
	}
	return best, bestTok
}

func (t *BPE) appendOrdinary(st *encodeState, out []int, text []byte) []int {
	for i := 0; i < len(text); {
		e := pieceEnd(text, i)
		out = t.appendPiece(st, out, text[i:e])
		i = e
	}
	return out
}

// appendPiece appends the BPE encoding of one pre-token.
func (t *BPE) appendPiece(st *encodeState, out []int, piece []byte) []int {
	if len(piece) == 1 {
		return append(out, int(t.byteID[piece[0]]))
	}
	if ids, ok := st.cache[string(piece)]; ok {
		for _, id := range ids {
			out = append(out, int(id))
		}
		return out
	}
	ids := t.mergePiece(piece)
	if len(st.cache) >= maxCacheEntries {
		clear(st.cache)
	}
	st.cache[string(piece)] = ids
	for _, id := range ids {
		out = append(out, int(id))
	}
	return out
}

// mergePiece runs the merge loop on one pre-token: start from its bytes and
// repeatedly merge the adjacent pair with the lowest rank (leftmost on ties)
// until no pair has a merge.
func (t *BPE) mergePiece(piece []byte) []int32 {
	if len(piece) > 64 {
		return t.mergeHeap(piece)
	}
	var buf [64]int32
	ids := buf[:len(piece)]
	for i, c := range piece {
		ids[i] = t.byteID[c]
	}
	for len(ids) > 1 {
		bestRank, bestAt := int32(-1), -1
		var bestID int32
		for i := 0; i+1 < len(ids); i++ {
			if m, ok := t.merges[pairKey(ids[i], ids[i+1])]; ok && (bestAt < 0 || m.rank < bestRank) {
				bestRank, bestAt, bestID = m.rank, i, m.id
			}
		}
		if bestAt < 0 {
			break
		}
		ids[bestAt] = bestID
		ids = append(ids[:bestAt+1], ids[bestAt+2:]...)
	}
	return append([]int32(nil), ids...)
}

// mergeHeap is mergePiece for long pre-tokens (long whitespace or symbol
// runs), O(n log n) instead of O(n^2): the symbols form a linked list and
// candidate merges sit in a heap ordered by (rank, position). Entries made
// stale by an earlier merge are skipped when popped.
func (t *BPE) mergeHeap(piece []byte) []int32 {
	n := len(piece)
	ids := make([]int32, n)
	prev := make([]int32, n)
	next := make([]int32, n)
	for i, c := range piece {
		ids[i] = t.byteID[c]
		prev[i] = int32(i - 1)
		next[i] = int32(i + 1)
	}
	next[n-1] = -1
	h := &mergeHeap{}
	push := func(i int32) {
		j := next[i]
		if i < 0 || j < 0 {
			return
		}
		if m, ok := t.merges[pairKey(ids[i], ids[j])]; ok {
			heap.Push(h, cand{rank: m.rank, pos: i, left: ids[i], right: ids[j], id: m.id})
		}
	}
	for i := int32(0); i < int32(n-1); i++ {
		push(i)
	}
	for h.Len() > 0 {
		c := heap.Pop(h).(cand)
		j := next[c.pos]
		if ids[c.pos] != c.left || j < 0 || ids[j] != c.right {
			continue // stale: one side was merged away since the push
		}
		ids[c.pos] = c.id
		ids[j] = -1
		next[c.pos] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = c.pos
		}
		if prev[c.pos] >= 0 {
			push(prev[c.pos])
		}
		push(c.pos)
	}
	out := make([]int32, 0, n)
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}

type cand struct {
	rank, pos, left, right, id int32
}

type mergeHeap []cand

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(cand)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Decode concatenates the bytes of ids. Special tokens decode to their text.
func (t *BPE) Decode(ids []int) ([]byte, error) {
	n := 0
	for i, id := range ids {
		if id < 0 || id >= len(t.tokens) {
			return nil, fmt.Errorf("decode: token id %d at position %d is outside the vocabulary [0, %d)", id, i, len(t.tokens))
		}
		n += len(t.tokens[id])
	}
	out := make([]byte, 0, n)
	for _, id := range ids {
		out = append(out, t.tokens[id]...)
	}
	return out, nil
}
