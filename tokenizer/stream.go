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
// but memory stays bounded by the chunk size (plus the longest pre-token).
func (t *BPE) EncodeStream(ctx context.Context, r io.Reader, withSpecial bool, emit func(ids []int) error) error {
	return t.encodeStream(ctx, r, withSpecial, streamChunk, emit)
}

// encodeStream is EncodeStream reading chunk bytes at a time (tests use tiny
// chunks to exercise the cuts).
func (t *BPE) encodeStream(ctx context.Context, r io.Reader, withSpecial bool, chunk int, emit func(ids []int) error) error {
	st := t.cache.Get().(*encodeState)
	defer t.cache.Put(st)
	var special []string
	if withSpecial {
		special = t.specialList
	}
	return forEachSafeChunk(ctx, r, special, chunk, func(text []byte) error {
		ids := make([]int, 0, len(text)/3+16)
		if withSpecial {
			ids = t.appendWithSpecial(st, ids, text)
		} else {
			ids = t.appendOrdinary(st, ids, text)
		}
		if len(ids) == 0 {
			return nil
		}
		return emit(ids)
	})
}

// forEachSafeChunk reads r to the end and calls fn with consecutive pieces of
// the text, cut only where the cut cannot change the result: the character
// before the cut is a letter or digit and the one after is of another class
// (so the pre-token in front must end there, whatever came before), and no
// occurrence of a special token straddles it. Text with no such place (a
// megabyte of whitespace) is buffered until one appears or the input ends.
func forEachSafeChunk(ctx context.Context, r io.Reader, special []string, chunk int, fn func([]byte) error) error {
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
		cut := lastSafeCut(buf, searched, len(buf)-margin, special)
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
func lastSafeCut(text []byte, lo, hi int, special []string) int {
	for j := hi; j > lo && j > 0; j-- {
		if j >= len(text) {
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
// text[j-1] and text[j].
func straddles(text []byte, j int, special []string) bool {
	for _, s := range special {
		lo := max(0, j-len(s)+1)
		hi := min(len(text), j+len(s)-1)
		if lo < hi && bytes.Contains(text[lo:hi], []byte(s)) {
			return true
		}
	}
	return false
}
