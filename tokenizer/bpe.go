package tokenizer

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"unicode/utf8"
)

// BPE is a byte-pair-encoding tokenizer, immutable after construction and
// safe for concurrent use. One type covers every BPE kind package tokenizer
// loads:
//
//   - byte-level (GPT-2, Llama 3, Qwen2, SmolLM, and what Train learns): the
//     initial symbols of a pre-token are its bytes; every byte is a token;
//   - SentencePiece-style (Llama 2, TinyLlama, Mistral): the initial symbols
//     are characters, a character missing from the vocabulary falls back to
//     its UTF-8 bytes as "<0xNN>" tokens, and spaces are "▁" word marks.
//
// The text pipeline in front of the merges (normalizer, pre-tokenizer, added
// tokens) is the one the tokenizer.json declares; nil pipe is GPT-2's, on a
// hand-written fast path.
type BPE struct {
	// tokens[id] is what id decodes to (len = VocabSize()).
	tokens [][]byte
	// syms[id] is the symbol string merges work on: the raw bytes of a
	// byte-level token, the piece text ("▁the", "<0x0A>") of a
	// SentencePiece one. index inverts it for ordinary (non-added) tokens.
	syms  [][]byte
	index map[string]int32
	// byteID[b] is the id of the single-byte token b (byte-level), or of
	// "<0xNN>" (SentencePiece byte fallback; -1 when the model has none).
	byteID [256]int32
	// merges maps a pair key (left<<32 | right) to its rank (position in
	// the merge list, lower merges first) and the id it merges into.
	merges map[uint64]merge
	// mergeList keeps the merges in rank order, for Save.
	mergeList [][2]int32
	// special maps special-token text to its id; specialList holds the same
	// texts, longest first, for matching. added/addedList are the same for
	// added tokens that are not special (matched by Encode too).
	special     map[string]int
	specialList []string
	added       map[string]int
	addedList   []string
	isSpecial   []bool // by id
	isAdded     []bool // by id: special or not

	chars        bool  // SentencePiece-style symbols (see above)
	byteFallback bool  // chars: unknown characters become <0xNN> tokens
	unk          int32 // chars: id for characters with no token, -1 if none
	fuseUnk      bool  // chars: consecutive unknown characters give one unk
	ignoreMerges bool  // a pre-token that is itself a token is not merged (Llama 3)
	pipe         *pipeline
	// stripStart/stripEnd are how many leading/trailing stripChar bytes
	// Decode removes from its result (the Strip decoder of Llama 2).
	stripStart, stripEnd int
	stripChar            byte
	// bos and eos are the begin/end-of-sequence ids, -1 if none.
	bos, eos int
	// kind names the tokenizer family (see Kind); desc is a canonical
	// description of the pipeline, for Fingerprint.
	kind, desc string
	// raw and rawConfig are the tokenizer.json and tokenizer_config.json
	// the tokenizer was loaded from (nil when built otherwise); SaveDir
	// writes them back unchanged.
	raw, rawConfig []byte

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

// NewBPE builds a byte-level tokenizer from its parts:
//   - tokens[id] is the raw byte string of each id; every single byte 0..255
//     must be one of them, and no two ids may share a byte string.
//   - merges lists (left, right) id pairs in rank order; tokens[left]+tokens[right]
//     must itself be a token.
//   - special lists the ids that are special tokens (matched as whole strings
//     by EncodeWithSpecial, never produced by merges).
func NewBPE(tokens [][]byte, merges [][2]int, special []int) (*BPE, error) {
	t, err := newBPE(tokens, tokens, merges, special, nil, false)
	if err != nil {
		return nil, err
	}
	t.kind, t.desc = KindGPT2, "gpt2"
	t.bos, t.eos = -1, -1
	if id, ok := t.special[EndOfText]; ok {
		t.bos, t.eos = id, id // GPT-2's tokenizer_config.json sets both
	}
	return t, nil
}

// EndOfText is GPT-2's document separator.
const EndOfText = "<|endoftext|>"

// newBPE checks and indexes the parts of a tokenizer. tokens[id] is what id
// decodes to, syms[id] the symbol string merges act on (the same slice for
// byte-level models); special and added are the ids of added tokens,
// special or not (their tokens[id] is their text). chars selects
// SentencePiece-style initial symbols. The caller sets the pipeline fields.
func newBPE(tokens, syms [][]byte, merges [][2]int, special, added []int, chars bool) (*BPE, error) {
	t := &BPE{
		tokens:    make([][]byte, len(tokens)),
		syms:      make([][]byte, len(tokens)),
		index:     make(map[string]int32, len(tokens)),
		merges:    make(map[uint64]merge, len(merges)),
		mergeList: make([][2]int32, len(merges)),
		special:   make(map[string]int, len(special)),
		added:     make(map[string]int, len(added)),
		isSpecial: make([]bool, len(tokens)),
		isAdded:   make([]bool, len(tokens)),
		chars:     chars,
		unk:       -1,
		bos:       -1,
		eos:       -1,
	}
	if len(tokens) > 1<<31-1 {
		return nil, fmt.Errorf("vocabulary of %d tokens is too large", len(tokens))
	}
	addAtomic := func(ids []int, what string, m map[string]int, list *[]string, spec bool) error {
		for _, id := range ids {
			if id < 0 || id >= len(tokens) {
				return fmt.Errorf("%s token id %d outside vocabulary of %d", what, id, len(tokens))
			}
			if len(tokens[id]) == 0 {
				return fmt.Errorf("%s token id %d is empty", what, id)
			}
			if t.isAdded[id] {
				return fmt.Errorf("%s token id %d is listed twice", what, id)
			}
			if prev, dup := t.special[string(tokens[id])]; dup {
				return fmt.Errorf("added tokens %d and %d have the same text %q", prev, id, tokens[id])
			}
			if prev, dup := t.added[string(tokens[id])]; dup {
				return fmt.Errorf("added tokens %d and %d have the same text %q", prev, id, tokens[id])
			}
			t.isAdded[id], t.isSpecial[id] = true, spec
			m[string(tokens[id])] = id
			*list = append(*list, string(tokens[id]))
		}
		sort.Slice(*list, func(i, j int) bool {
			a, b := (*list)[i], (*list)[j]
			if len(a) != len(b) {
				return len(a) > len(b)
			}
			return a < b
		})
		return nil
	}
	if err := addAtomic(special, "special", t.special, &t.specialList, true); err != nil {
		return nil, err
	}
	if err := addAtomic(added, "added", t.added, &t.addedList, false); err != nil {
		return nil, err
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for id, tok := range tokens {
		if len(tok) == 0 || len(syms[id]) == 0 {
			return nil, fmt.Errorf("token id %d has an empty byte string", id)
		}
		t.tokens[id] = append([]byte(nil), tok...)
		t.syms[id] = t.tokens[id]
		if chars {
			t.syms[id] = append([]byte(nil), syms[id]...)
		}
		if t.isAdded[id] {
			continue // added texts may coincide with ordinary strings
		}
		sym := t.syms[id]
		if prev, dup := t.index[string(sym)]; dup {
			return nil, fmt.Errorf("token ids %d and %d have the same bytes %q", prev, id, sym)
		}
		t.index[string(sym)] = int32(id)
		if !chars && len(sym) == 1 {
			t.byteID[sym[0]] = int32(id)
		}
		if b, ok := byteFallbackToken(sym); chars && ok {
			t.byteID[b] = int32(id)
		}
	}
	if !chars {
		for b, id := range t.byteID {
			if id < 0 {
				return nil, fmt.Errorf("vocabulary has no token for byte 0x%02x; a byte-level BPE needs all 256", b)
			}
		}
	}
	for r, m := range merges {
		a, b := m[0], m[1]
		if a < 0 || a >= len(tokens) || b < 0 || b >= len(tokens) {
			return nil, fmt.Errorf("merge %d (%d, %d): id outside vocabulary of %d", r, a, b, len(tokens))
		}
		if t.isAdded[a] || t.isAdded[b] {
			return nil, fmt.Errorf("merge %d (%d, %d) uses an added token", r, a, b)
		}
		joined := string(t.syms[a]) + string(t.syms[b])
		id, ok := t.index[joined]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q + %q): result %q is not in the vocabulary", r, t.syms[a], t.syms[b], joined)
		}
		key := pairKey(int32(a), int32(b))
		if _, dup := t.merges[key]; dup {
			return nil, fmt.Errorf("merge %d (%q + %q) is listed twice", r, t.syms[a], t.syms[b])
		}
		t.merges[key] = merge{rank: int32(r), id: id}
		t.mergeList[r] = [2]int32{int32(a), int32(b)}
	}
	t.cache.New = func() any { return &encodeState{cache: make(map[string][]int32)} }
	return t, nil
}

// byteFallbackToken reports whether sym is a byte-fallback piece "<0xNN>"
// (two upper-case hex digits, as SentencePiece and Hugging Face write them)
// and which byte it stands for.
func byteFallbackToken(sym []byte) (byte, bool) {
	if len(sym) != 6 || string(sym[:3]) != "<0x" || sym[5] != '>' {
		return 0, false
	}
	hex := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'A' <= c && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	hi, ok1 := hex(sym[3])
	lo, ok2 := hex(sym[4])
	return hi<<4 | lo, ok1 && ok2
}

// VocabSize is the number of token ids, special tokens included.
func (t *BPE) VocabSize() int { return len(t.tokens) }

// NumMerges is the length of the merge list.
func (t *BPE) NumMerges() int { return len(t.mergeList) }

// TokenBytes returns what id decodes to on its own (a copy), or an error for
// an unknown id. Decode of several ids is their concatenation, except that a
// SentencePiece decoder strips the leading space of the whole text.
func (t *BPE) TokenBytes(id int) ([]byte, error) {
	if id < 0 || id >= len(t.tokens) {
		return nil, fmt.Errorf("token id %d outside vocabulary of %d", id, len(t.tokens))
	}
	return append([]byte(nil), t.tokens[id]...), nil
}

// SpecialID returns the id of an added token such as "<|endoftext|>" or
// "</s>" (special or not).
func (t *BPE) SpecialID(text string) (int, bool) {
	if id, ok := t.special[text]; ok {
		return id, true
	}
	id, ok := t.added[text]
	return id, ok
}

// SpecialTokens returns the special token texts, sorted.
func (t *BPE) SpecialTokens() []string {
	out := append([]string(nil), t.specialList...)
	sort.Strings(out)
	return out
}

// BOS returns the begin-of-sequence id, if the tokenizer has one: from
// tokenizer_config.json's bos_token when LoadDir found one, else from the
// tokenizer.json post-processor's template, else the first added token named
// "<s>", "<|begin_of_text|>" or "<|endoftext|>".
func (t *BPE) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS returns the end-of-sequence id, if the tokenizer has one: from
// tokenizer_config.json's eos_token when LoadDir found one, else the first
// added token named "</s>", "<|end_of_text|>" or "<|endoftext|>".
func (t *BPE) EOS() (int, bool) { return t.eos, t.eos >= 0 }

// Kind names the tokenizer family: KindGPT2, KindByteLevel or
// KindSentencePiece.
func (t *BPE) Kind() string { return t.kind }

// Encode encodes text as ordinary text: special-token strings such as
// "<|endoftext|>" or "<s>" are split like any other text (tiktoken's
// encode_ordinary, Hugging Face's split_special_tokens=True). Added tokens
// that are not special are still matched whole, as Hugging Face does.
func (t *BPE) Encode(text []byte) []int {
	st := t.cache.Get().(*encodeState)
	defer t.cache.Put(st)
	out := make([]int, 0, len(text)/3+1)
	return t.appendText(st, out, text, false, false)
}

// EncodeWithSpecial encodes text and turns every occurrence of an added
// token's text (special or not) into that token's id, leftmost match,
// longest first: Hugging Face's default.
func (t *BPE) EncodeWithSpecial(text []byte) []int {
	st := t.cache.Get().(*encodeState)
	defer t.cache.Put(st)
	out := make([]int, 0, len(text)/3+1)
	return t.appendText(st, out, text, true, false)
}

// appendText encodes text, matching added tokens (special ones only if
// withSpecial) as atoms. cont says text continues earlier text (a stream
// chunk), so its first segment is not the start of the input.
func (t *BPE) appendText(st *encodeState, out []int, text []byte, withSpecial, cont bool) []int {
	where := segFirst
	if cont {
		where = segCont
	}
	if len(t.addedList) == 0 && !withSpecial {
		return t.appendSegment(st, out, text, where)
	}
	for len(text) > 0 {
		pos, tok, id := t.nextAdded(text, withSpecial)
		if pos < 0 {
			return t.appendSegment(st, out, text, where)
		}
		out = t.appendSegment(st, out, text[:pos], where)
		out = append(out, id)
		text = text[pos+len(tok):]
		where = segAfterAdded
	}
	return out
}

// nextAdded finds the leftmost added token in text (longest on ties; special
// ones only if withSpecial), returning its offset, text and id, or -1.
func (t *BPE) nextAdded(text []byte, withSpecial bool) (int, string, int) {
	best, bestTok := -1, ""
	scan := func(list []string) {
		for _, s := range list {
			limit := text
			if best >= 0 {
				limit = text[:min(len(text), best+len(s))]
			}
			p := bytes.Index(limit, []byte(s))
			if p >= 0 && (best < 0 || p < best || (p == best && len(s) > len(bestTok))) {
				best, bestTok = p, s
			}
		}
	}
	if withSpecial {
		scan(t.specialList)
	}
	scan(t.addedList)
	if best < 0 {
		return -1, "", -1
	}
	id, ok := t.special[bestTok]
	if !ok {
		id = t.added[bestTok]
	}
	return best, bestTok, id
}

// Where a segment (text between added tokens) sits in the input: at its
// start, after an added token, or continuing a stream chunk. Hugging Face
// normalizes each segment on its own, so Llama 2's Prepend("▁") applies
// after an added token too, while Metaspace's "first" scheme applies only at
// the start; neither applies to a stream continuation (which EncodeStream
// cuts only before a space).
const (
	segFirst = iota
	segAfterAdded
	segCont
)

// appendSegment encodes text that holds no added token; where is a seg*
// constant.
func (t *BPE) appendSegment(st *encodeState, out []int, seg []byte, where int) []int {
	if len(seg) == 0 {
		return out
	}
	if t.pipe == nil {
		return t.appendOrdinary(st, out, seg)
	}
	t.pipe.run(seg, where, func(piece []byte) {
		out = t.appendPiece(st, out, piece)
	})
	return out
}

// appendOrdinary is GPT-2's pre-tokenizer and merges, the fast path.
func (t *BPE) appendOrdinary(st *encodeState, out []int, text []byte) []int {
	for i := 0; i < len(text); {
		e := pieceEnd(text, i)
		out = t.appendPiece(st, out, text[i:e])
		i = e
	}
	return out
}

// maxCachedPiece is the longest pre-token the cache keeps (longer ones are
// rare and would pin large strings).
const maxCachedPiece = 256

// appendPiece appends the BPE encoding of one pre-token.
func (t *BPE) appendPiece(st *encodeState, out []int, piece []byte) []int {
	if len(piece) == 1 && !t.chars {
		return append(out, int(t.byteID[piece[0]]))
	}
	if ids, ok := st.cache[string(piece)]; ok {
		for _, id := range ids {
			out = append(out, int(id))
		}
		return out
	}
	ids := t.mergePiece(piece)
	if len(piece) <= maxCachedPiece {
		if len(st.cache) >= maxCacheEntries {
			clear(st.cache)
		}
		st.cache[string(piece)] = ids
	}
	for _, id := range ids {
		out = append(out, int(id))
	}
	return out
}

// mergePiece encodes one pre-token: its initial symbols, then the merge loop.
func (t *BPE) mergePiece(piece []byte) []int32 {
	if t.ignoreMerges {
		if id, ok := t.index[string(piece)]; ok && !t.isAdded[id] {
			return []int32{id}
		}
	}
	var buf [64]int32
	var ids []int32
	if t.chars {
		ids = t.charSymbols(piece, buf[:0])
	} else {
		ids = buf[:0]
		if len(piece) > len(buf) {
			ids = make([]int32, 0, len(piece))
		}
		for _, c := range piece {
			ids = append(ids, t.byteID[c])
		}
	}
	return t.mergeIDs(ids)
}

// charSymbols appends the initial SentencePiece symbols of piece: the id of
// each character, or its bytes' "<0xNN>" ids (byte fallback), or unk.
// Invalid UTF-8 bytes are characters of their own, so they fall back too.
func (t *BPE) charSymbols(piece []byte, ids []int32) []int32 {
	for i := 0; i < len(piece); {
		_, n := utf8.DecodeRune(piece[i:])
		ch := piece[i : i+n]
		i += n
		if id, ok := t.index[string(ch)]; ok {
			ids = append(ids, id)
			continue
		}
		if t.byteFallback {
			for _, c := range ch {
				ids = append(ids, t.byteID[c])
			}
			continue
		}
		if t.fuseUnk && len(ids) > 0 && ids[len(ids)-1] == t.unk {
			continue
		}
		ids = append(ids, t.unk)
	}
	return ids
}

// mergeIDs runs the merge loop on initial symbols: repeatedly merge the
// adjacent pair with the lowest rank (leftmost on ties) until no pair has a
// merge. It may reuse ids' storage; the result is a fresh slice.
func (t *BPE) mergeIDs(ids []int32) []int32 {
	if len(ids) > 64 {
		return t.mergeHeap(ids)
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

// mergeHeap is mergeIDs for long pre-tokens (long whitespace or symbol
// runs), O(n log n) instead of O(n^2): the symbols form a linked list and
// candidate merges sit in a heap ordered by (rank, position). Entries made
// stale by an earlier merge are skipped when popped.
func (t *BPE) mergeHeap(ids []int32) []int32 {
	n := len(ids)
	prev := make([]int32, n)
	next := make([]int32, n)
	for i := range ids {
		prev[i] = int32(i - 1)
		next[i] = int32(i + 1)
	}
	next[n-1] = -1
	h := make(mergeHeap, 0, n)
	push := func(i int32) {
		j := next[i]
		if i < 0 || j < 0 {
			return
		}
		if m, ok := t.merges[pairKey(ids[i], ids[j])]; ok {
			h.push(cand{rank: m.rank, pos: i, left: ids[i], right: ids[j], id: m.id})
		}
	}
	for i := int32(0); i < int32(n-1); i++ {
		push(i)
	}
	for h.Len() > 0 {
		c := h.pop()
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

// mergeHeap is a min-heap of candidates by (rank, position), written out
// for the concrete type (container/heap would box every candidate).
type mergeHeap []cand

func (h mergeHeap) Len() int { return len(h) }

func (h mergeHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}

func (h *mergeHeap) push(c cand) {
	*h = append(*h, c)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *mergeHeap) pop() cand {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(q) && q.less(l, m) {
			m = l
		}
		if r < len(q) && q.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

// Decode concatenates what ids decode to. Added tokens decode to their
// text. A SentencePiece-style decoder (Llama 2's Strip) then removes the
// leading space its word mark stands for. Byte-fallback tokens give their raw
// byte even when the bytes are not valid UTF-8 (Hugging Face would print
// U+FFFD), so Decode(Encode(text)) == text for every byte string.
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
	for k := 0; k < t.stripStart && len(out) > 0 && out[0] == t.stripChar; k++ {
		out = out[1:]
	}
	for k := 0; k < t.stripEnd && len(out) > 0 && out[len(out)-1] == t.stripChar; k++ {
		out = out[:len(out)-1]
	}
	return out, nil
}
