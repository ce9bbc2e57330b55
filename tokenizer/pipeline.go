package tokenizer

import (
	"bytes"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// A pipeline is what a tokenizer.json declares in front of the BPE model,
// applied to each run of text between added tokens (a segment): the
// normalizers in order, then Metaspace (if declared), then the splitting
// stages of the pre-tokenizer, each splitting the pieces of the one before.
// The resulting pieces are BPE-encoded one by one.
type pipeline struct {
	norm   []normalizer
	meta   *metaspace
	stages []splitter
	// cut is where EncodeStream may cut the input (see stream.go).
	cut cutRule
}

// run calls fn with each piece of seg, in order; where is a seg* constant
// (see appendSegment).
func (p *pipeline) run(seg []byte, where int, fn func(piece []byte)) {
	s := seg
	for _, n := range p.norm {
		if _, ok := n.(prepend); ok && where == segCont {
			continue
		}
		s = n.normalize(s)
	}
	if p.meta != nil {
		s = p.meta.apply(s, where)
		if p.meta.split {
			splitBoundaries(s, func(emit func(int)) {
				for i := 0; ; {
					j := bytes.Index(s[i:], p.meta.repl)
					if j < 0 {
						return
					}
					emit(i + j) // MergedWithNext: each mark starts a piece
					i += j + len(p.meta.repl)
				}
			}, func(piece []byte) { p.split(0, piece, fn) })
			return
		}
	}
	p.split(0, s, fn)
}

// split passes piece through stages[i:].
func (p *pipeline) split(i int, piece []byte, fn func(piece []byte)) {
	if len(piece) == 0 {
		return
	}
	if i == len(p.stages) {
		fn(piece)
		return
	}
	p.stages[i].split(piece, func(sub []byte) { p.split(i+1, sub, fn) })
}

// splitBoundaries cuts s at the offsets bounds emits (increasing) and calls
// fn with each non-empty part.
func splitBoundaries(s []byte, bounds func(emit func(int)), fn func([]byte)) {
	last := 0
	bounds(func(b int) {
		if b > last {
			fn(s[last:b])
			last = b
		}
	})
	if last < len(s) {
		fn(s[last:])
	}
}

// A normalizer rewrites a segment before it is split.
type normalizer interface {
	normalize(s []byte) []byte
}

// nfc is Unicode canonical composition (Qwen2).
type nfc struct{}

func (nfc) normalize(s []byte) []byte { return norm.NFC.Bytes(s) }

// prepend adds its text in front of a non-empty segment (Llama 2's "▁").
type prepend struct{ text []byte }

func (p prepend) normalize(s []byte) []byte {
	if len(s) == 0 {
		return s
	}
	out := make([]byte, 0, len(p.text)+len(s))
	return append(append(out, p.text...), s...)
}

// replace substitutes every occurrence of a literal string (Llama 2's
// " " -> "▁").
type replace struct{ old, new []byte }

func (r replace) normalize(s []byte) []byte { return bytes.ReplaceAll(s, r.old, r.new) }

// metaspace is the Metaspace pre-tokenizer: spaces become the replacement
// mark, which is prepended per the scheme when the segment does not already
// start with it, and with split the segment is cut before every mark.
type metaspace struct {
	repl   []byte
	scheme string // "always", "first" or "never"
	split  bool
}

func (m *metaspace) apply(s []byte, where int) []byte {
	s = bytes.ReplaceAll(s, []byte(" "), m.repl)
	pre := m.scheme == "always" && where != segCont || m.scheme == "first" && where == segFirst
	if pre && !bytes.HasPrefix(s, m.repl) {
		s = append(append(make([]byte, 0, len(m.repl)+len(s)), m.repl...), s...)
	}
	return s
}

// A splitter is one splitting stage of a pre-tokenizer.
type splitter interface {
	split(piece []byte, fn func(sub []byte))
}

// byteLevel is the ByteLevel pre-tokenizer: an optional prefix space, then
// (with useRegex) GPT-2's split. Its byte-to-character mapping is implicit:
// byte-level models work on raw bytes throughout.
type byteLevel struct {
	prefixSpace, useRegex bool
}

func (b byteLevel) split(piece []byte, fn func(sub []byte)) {
	if b.prefixSpace && piece[0] != ' ' {
		piece = append([]byte{' '}, piece...)
	}
	if !b.useRegex {
		fn(piece)
		return
	}
	splitPieces(piece, fn)
}

// markSplit cuts a SentencePiece-style segment before every word mark that
// follows a character other than the mark ("▁a▁▁b" -> "▁a", "▁▁b"). It is
// added to pipelines without a pre-tokenizer only when no token holds a mark
// after another character (marksOnlyLead), so no merge can span a cut and
// the result is that of merging the whole segment at once, while the pieces
// stay short enough to cache.
type markSplit struct{ mark []byte }

func (m markSplit) split(piece []byte, fn func(sub []byte)) {
	splitBoundaries(piece, func(emit func(int)) {
		for i := 1; i < len(piece); {
			j := bytes.Index(piece[i:], m.mark)
			if j < 0 {
				return
			}
			at := i + j
			if !bytes.HasSuffix(piece[:at], m.mark) {
				emit(at)
			}
			i = at + len(m.mark)
		}
	}, fn)
}

// Split behaviours (Hugging Face's SplitDelimiterBehavior) for a match of
// the pattern: its own piece, dropped, or joined to the text before or after.
const (
	behaviorIsolated           = "Isolated"
	behaviorRemoved            = "Removed"
	behaviorMergedWithPrevious = "MergedWithPrevious"
	behaviorMergedWithNext     = "MergedWithNext"
)

// regexSplit is the Split pre-tokenizer with a regular expression, run by
// regexp2 (the engine tiktoken-go uses: lookahead, Unicode classes, .NET
// semantics). The text is decoded to runes the way Go converts a string
// (an invalid byte is one U+FFFD), so rune offsets map back to bytes.
type regexSplit struct {
	re       *regexp2.Regexp
	behavior string
}

func (r regexSplit) split(piece []byte, fn func(sub []byte)) {
	runes := make([]rune, 0, len(piece))
	offs := make([]int, 0, len(piece)+1)
	for i := 0; i < len(piece); {
		c, n := utf8.DecodeRune(piece[i:])
		runes = append(runes, c)
		offs = append(offs, i)
		i += n
	}
	offs = append(offs, len(piece))
	if r.behavior == behaviorRemoved {
		last := 0
		r.matches(runes, offs, func(s, e int) {
			if s > last {
				fn(piece[last:s])
			}
			last = e
		})
		if last < len(piece) {
			fn(piece[last:])
		}
		return
	}
	splitBoundaries(piece, func(emit func(int)) {
		r.matches(runes, offs, func(s, e int) {
			switch r.behavior {
			case behaviorIsolated:
				emit(s)
				emit(e)
			case behaviorMergedWithPrevious:
				emit(e)
			case behaviorMergedWithNext:
				emit(s)
			}
		})
	}, fn)
}

// matches calls fn with the byte span of each non-empty match, in order.
func (r regexSplit) matches(runes []rune, offs []int, fn func(s, e int)) {
	m, err := r.re.FindRunesMatch(runes)
	for err == nil && m != nil {
		if m.Length > 0 {
			fn(offs[m.Index], offs[m.Index+m.Length])
		}
		m, err = r.re.FindNextMatch(m)
	}
	// err is only ever a match timeout, and none is set.
}

// digits is the Digits pre-tokenizer: runs of numeric characters (or each
// one, with individual) become pieces of their own.
type digits struct{ individual bool }

func (d digits) split(piece []byte, fn func(sub []byte)) {
	splitBoundaries(piece, func(emit func(int)) {
		inRun := false
		for i := 0; i < len(piece); {
			c, n := utf8.DecodeRune(piece[i:])
			isNum := unicode.IsNumber(c) && !(c == utf8.RuneError && n == 1)
			if isNum && (!inRun || d.individual) || !isNum && inRun {
				emit(i)
			}
			inRun = isNum
			i += n
		}
	}, fn)
}

// The Split patterns with a hand-written splitter: cl100k_base's (Llama 3
// uses it too) and Qwen2's, which differ only in how many digits group.
const (
	cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// newRegexSplitter returns a hand-written splitter equivalent to expr with
// the given behaviour, or nil when there is none (regexp2 then runs expr).
func newRegexSplitter(expr, behavior string) splitter {
	if behavior != behaviorIsolated {
		return nil
	}
	switch expr {
	case cl100kPattern:
		return cl100kSplit{maxDigits: 3}
	case qwen2Pattern:
		return cl100kSplit{maxDigits: 1}
	}
	return nil
}

// cl100kSplit is the cl100k family's Split written out by hand, like
// pieceEnd for GPT-2: every character is matched by one of the pattern's
// alternatives, so Isolated pieces are consecutive matches. Invalid UTF-8
// bytes are "other" characters, as U+FFFD is for regexp2.
type cl100kSplit struct{ maxDigits int }

func (c cl100kSplit) split(piece []byte, fn func(sub []byte)) {
	for i := 0; i < len(piece); {
		e := c.end(piece, i)
		fn(piece[i:e])
		i = e
	}
}

func isNewline(b byte) bool { return b == '\r' || b == '\n' }

// end returns the end of the match that starts at text[i], trying the
// pattern's alternatives in order.
func (c cl100kSplit) end(text []byte, i int) int {
	b := text[i]
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if b == '\'' && i+1 < len(text) {
		switch text[i+1] | 0x20 {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v', 'l':
			if i+2 < len(text) {
				two := string([]byte{text[i+1] | 0x20, text[i+2] | 0x20})
				if two == "re" || two == "ve" || two == "ll" {
					return i + 3
				}
			}
		}
	}
	cls, n := classAt(text, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if cls == clsLetter {
		return runEnd(text, i+n, clsLetter)
	}
	if cls != clsNumber && !isNewline(b) && i+n < len(text) {
		if next, m := classAt(text, i+n); next == clsLetter {
			return runEnd(text, i+n+m, clsLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if cls == clsNumber {
		end := i + n
		for k := 1; k < c.maxDigits && end < len(text); k++ {
			next, m := classAt(text, end)
			if next != clsNumber {
				break
			}
			end += m
		}
		return end
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	start := i
	if b == ' ' && i+1 < len(text) {
		if next, _ := classAt(text, i+1); next == clsOther {
			start = i + 1
		}
	}
	if sc, m := classAt(text, start); sc == clsOther {
		end := runEnd(text, start+m, clsOther)
		for end < len(text) && isNewline(text[end]) {
			end++
		}
		return end
	}
	// Whitespace. \s*[\r\n]+ : up to the run's last newline, if it has one.
	end := runEnd(text, i+n, clsSpace)
	for j := end - 1; j >= i; j-- {
		if isNewline(text[j]) {
			return j + 1
		}
	}
	// \s+(?!\S) | \s+ : as in GPT-2's pattern.
	if end == len(text) {
		return end
	}
	if last := lastRuneStart(text, i, end); last > i {
		return last
	}
	return end
}
