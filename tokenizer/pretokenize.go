package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The GPT-2 pre-tokenizer is the regular expression
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// applied leftmost-first. pieceEnd below is that expression written out by
// hand: no backtracking engine, one pass over the bytes, and it accepts
// invalid UTF-8 (each bad byte is one "other" character, the class U+FFFD
// would have), so no byte is ever lost. \s is unicode.IsSpace, \p{L}
// unicode.IsLetter and \p{N} unicode.IsNumber, the same classes the regexp2
// engine used by tiktoken-go applies.

// Character classes of the expression.
const (
	clsOther  = iota // [^\s\p{L}\p{N}]
	clsLetter        // \p{L}
	clsNumber        // \p{N}
	clsSpace         // \s
)

// asciiClass is the class of each ASCII byte, the hot path.
var asciiClass = func() [128]uint8 {
	var t [128]uint8
	for c := 0; c < 128; c++ {
		t[c] = runeClass(rune(c))
	}
	return t
}()

func runeClass(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

// classAt returns the class of the character starting at text[i] and its
// width in bytes. Invalid UTF-8 counts as one "other" byte.
func classAt(text []byte, i int) (uint8, int) {
	c := text[i]
	if c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, n := utf8.DecodeRune(text[i:])
	if r == utf8.RuneError {
		return clsOther, n
	}
	return runeClass(r), n
}

// runEnd returns the end of the run of characters of class cls starting at i.
func runEnd(text []byte, i int, cls uint8) int {
	for i < len(text) {
		c, n := classAt(text, i)
		if c != cls {
			break
		}
		i += n
	}
	return i
}

// pieceEnd returns the end of the pre-token that starts at text[i]
// (i < len(text)). Calling it repeatedly from 0 yields the same split as the
// GPT-2 regular expression.
func pieceEnd(text []byte, i int) int {
	// 's|'t|'re|'ve|'m|'ll|'d
	if text[i] == '\'' && i+1 < len(text) {
		switch text[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v', 'l':
			if i+2 < len(text) {
				two := string(text[i+1 : i+3])
				if two == "re" || two == "ve" || two == "ll" {
					return i + 3
				}
			}
		}
	}
	cls, n := classAt(text, i)
	// ' ?' before a letter, number or other run: the space joins the run.
	if text[i] == ' ' && i+1 < len(text) {
		if next, m := classAt(text, i+1); next != clsSpace {
			return runEnd(text, i+1+m, next)
		}
	}
	if cls != clsSpace {
		// \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
		return runEnd(text, i+n, cls)
	}
	// \s+(?!\S) | \s+ : a whitespace run that reaches the end of the text is
	// one piece; one followed by a non-space gives up its last character
	// (which then prefixes the next word) unless it is the only one.
	end := runEnd(text, i+n, clsSpace)
	if end == len(text) {
		return end
	}
	last := lastRuneStart(text, i, end)
	if last > i {
		return last
	}
	return end
}

// lastRuneStart returns the start of the last character in text[lo:hi],
// decoding the same way classAt does.
func lastRuneStart(text []byte, lo, hi int) int {
	// Whitespace runs are valid UTF-8 (invalid bytes are "other"), so a
	// backward decode finds the same boundary a forward scan would.
	_, n := utf8.DecodeLastRune(text[lo:hi])
	return hi - n
}

// splitPieces calls fn for each pre-token of text, in order.
func splitPieces(text []byte, fn func(piece []byte)) {
	for i := 0; i < len(text); {
		e := pieceEnd(text, i)
		fn(text[i:e])
		i = e
	}
}
