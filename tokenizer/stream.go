package tokenizer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// streamChunk is how much text EncodeStream reads at a time.
const streamChunk = 1 << 20

// EncodeStream encodes everything read from r, calling emit with consecutive
// runs of ids (emit may keep the slice). The ids are exactly those of
// Encode (or EncodeWithSpecial when withSpecial is set) on the whole text,
// but memory stays bounded by the chunk size (plus the longest pre-token)
// when the pipeline has safe cut points: GPT-2's, the cl100k family's (with
// or without NFC and Digits), and SentencePiece-style vocabularies whose
// word marks only start pieces. Other pipelines (an arbitrary Split regex)
// are encoded from the whole input.
func (t *BPE) EncodeStream(ctx context.Context, r io.Reader, withSpecial bool, emit func(ids []int) error) error {
	return t.encodeStream(ctx, r, withSpecial, streamChunk, emit)
}

// encodeStream is EncodeStream reading chunk bytes at a time (tests use tiny
// chunks to exercise the cuts).
func (t *BPE) encodeStream(ctx context.Context, r io.Reader, withSpecial bool, chunk int, emit func(ids []int) error) error {
	st := t.cache.Get().(*encodeState)
	defer t.cache.Put(st)
	var atomic []string
	if withSpecial {
		atomic = append(atomic, t.specialList...)
	}
	atomic = append(atomic, t.addedList...)
	rule := cutRule{kind: cutClass}
	if t.pipe != nil {
		rule = t.pipe.cut
	}
	cont := false
	return forEachSafeChunk(ctx, r, atomic, rule, chunk, func(text []byte) error {
		ids := make([]int, 0, len(text)/3+16)
		ids = t.appendText(st, ids, text, withSpecial, cont)
		cont = true
		if len(ids) == 0 {
			return nil
		}
		return emit(ids)
	})
}

// A cutRule says where text may be cut without changing its encoding.
type cutRule struct {
	kind int
	// asciiAfter: the character after a cut must also be ASCII (with an
	// NFC normalizer, which could compose across a cut before a mark).
	asciiAfter bool
}

const (
	// cutNone: nowhere; the whole input is encoded at once.
	cutNone = iota
	// cutClass: where a letter or digit is followed by a character of
	// another class (GPT-2, cl100k, Llama 3 and Qwen2 pre-tokenizers all end
	// a piece there, whatever came before).
	cutClass
	// cutSpace: before a space that follows a non-space (SentencePiece
	// vocabularies whose word marks only ever start a piece, checked at
	// load, so no token spans the cut).
	cutSpace
)

// streamCutRule decides where t's input may be cut (see cutRule).
func streamCutRule(t *BPE) cutRule {
	p := t.pipe
	if t.chars {
		mark := []byte("\u2581")
		if p.meta != nil {
			mark = p.meta.repl
		}
		for _, n := range p.norm {
			switch n.(type) {
			case prepend, replace:
			default:
				return cutRule{}
			}
		}
		if !marksOnlyLead(t, mark) {
			return cutRule{}
		}
		return cutRule{kind: cutSpace}
	}
	rule := cutRule{kind: cutClass}
	for _, n := range p.norm {
		if _, ok := n.(nfc); !ok {
			return cutRule{}
		}
		rule.asciiAfter = true
	}
	if p.meta != nil {
		return cutRule{}
	}
	splits := false
	for _, s := range p.stages {
		switch s := s.(type) {
		case byteLevel:
			if s.prefixSpace {
				return cutRule{}
			}
			splits = splits || s.useRegex
		case digits:
		case cl100kSplit:
			splits = true
		default:
			return cutRule{}
		}
	}
	if !splits {
		return cutRule{}
	}
	return rule
}

// marksOnlyLead reports whether no ordinary token holds the word mark after
// a character that is not a mark ("a▁" or "▁a▁b"), so that no token can
// span a cut made before a space.
func marksOnlyLead(t *BPE, mark []byte) bool {
	for id, sym := range t.syms {
		if t.isAdded[id] {
			continue
		}
		rest := sym
		for bytes.HasPrefix(rest, mark) {
			rest = rest[len(mark):]
		}
		if bytes.Contains(rest, mark) {
			return false
		}
	}
	return true
}

// forEachSafeChunk reads r to the end and calls fn with consecutive pieces of
// the text, cut only where rule allows (so the cut cannot change the result)
// and no occurrence of an atomic token straddles the cut. Text with no such
// place (a megabyte of whitespace) is buffered until one appears or the
// input ends.
func forEachSafeChunk(ctx context.Context, r io.Reader, special []string, rule cutRule, chunk int, fn func([]byte) error) error {
	margin := 16
	for _, s := range special {
		margin = max(margin, len(s)+4)
	}
	buf := make([]byte, 0, 2*chunk)
	searched := 0 // cuts before this offset were already ruled out
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if cap(buf)-len(buf) < chunk {
			grown := make([]byte, len(buf), 2*cap(buf)+chunk)
			copy(grown, buf)
			buf = grown
		}
		n, err := io.ReadAtLeast(r, buf[len(buf):len(buf)+chunk], chunk)
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if len(buf) > 0 {
				return fn(buf)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		cut := lastSafeCut(buf, searched, len(buf)-margin, special, rule)
		if cut <= 0 {
			searched = max(0, len(buf)-margin)
			continue
		}
		if err := fn(buf[:cut]); err != nil {
			return err
		}
		rest := copy(buf, buf[cut:])
		buf = buf[:rest]
		searched = 0
	}
}

// lastSafeCut returns the largest safe cut in (lo, hi], or -1.
func lastSafeCut(text []byte, lo, hi int, special []string, rule cutRule) int {
	if rule.kind == cutNone {
		return -1
	}
	for j := hi; j > lo && j > 0; j-- {
		if j >= len(text) {
			continue
		}
		if rule.kind == cutSpace {
			if text[j] != ' ' || text[j-1] == ' ' || straddles(text, j, special) {
				continue
			}
			return j
		}
		if rule.asciiAfter && text[j] >= utf8.RuneSelf {
			continue
		}
		before, n := utf8.DecodeLastRune(text[:j])
		if before == utf8.RuneError && n <= 1 {
			continue
		}
		cb := runeClass(before)
		if cb != clsLetter && cb != clsNumber {
			continue
		}
		if ca, _ := classAt(text, j); ca == cb {
			continue
		}
		if straddles(text, j, special) {
			continue
		}
		return j
	}
	return -1
}

// straddles reports whether an occurrence of a special token covers both
// text[j-1] and text[j], or ends at j (the segment after an added token is
// normalized as a start, a continuation chunk is not).
func straddles(text []byte, j int, special []string) bool {
	for _, s := range special {
		if bytes.HasSuffix(text[:j], []byte(s)) {
			return true
		}
	}
	for _, s := range special {
		lo := max(0, j-len(s)+1)
		hi := min(len(text), j+len(s)-1)
		if lo < hi && bytes.Contains(text[lo:hi], []byte(s)) {
			return true
		}
	}
	return false
}
