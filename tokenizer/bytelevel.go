package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// GPT-2's files do not store raw bytes: each byte is mapped to a printable
// Unicode character first ("bytes_to_unicode" in the GPT-2 source). Printable
// Latin-1 bytes map to themselves; the other 68 bytes (controls, space, ...)
// map to U+0100.. in byte order, so the space byte becomes 'Ġ' (U+0120) and
// '\n' becomes 'Ċ' (U+010A). These tables are pure functions of that rule.

// byteToRune[b] is the printable character that stands for byte b.
var byteToRune = func() [256]rune {
	var t [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if gpt2Printable(b) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}()

// runeToByte inverts byteToRune; -1 marks characters that stand for no byte.
var runeToByte = func() [324]int16 {
	var t [324]int16
	for i := range t {
		t[i] = -1
	}
	for b, r := range byteToRune {
		t[r] = int16(b)
	}
	return t
}()

func gpt2Printable(b int) bool {
	return ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
}

// byteLevelEncode renders raw token bytes as a GPT-2 file string.
func byteLevelEncode(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) * 2)
	for _, c := range b {
		sb.WriteRune(byteToRune[c])
	}
	return sb.String()
}

// byteLevelDecode turns a GPT-2 file string back into raw bytes. It fails if
// the string holds a character that stands for no byte.
func byteLevelDecode(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i, r := range s {
		if r == utf8.RuneError || int(r) >= len(runeToByte) || runeToByte[r] < 0 {
			return nil, fmt.Errorf("character %q at byte %d is not a GPT-2 byte-level symbol", r, i)
		}
		out = append(out, byte(runeToByte[r]))
	}
	return out, nil
}
