package tokentest

import (
	"math/rand/v2"
	"strings"
)

// Fragments of the kinds of text the tokenizer must handle. Mixed joins them
// at random, so every run of a test sees the same text for a seed.
var (
	prose = []string{
		"The quick brown fox jumps over the lazy dog.",
		"It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
		"We'll see; they've said you're right, and I'm sure she'd agree. DON'T SHOUT, it'S FINE.",
		"In 2026 the model reached 3.14159 nats after 1,000,000 steps (about 42% of the budget).",
		"Call me Ishmael. Some years ago--never mind how long precisely--having little or no money in my purse...",
		"\"Quoted,\" she said; 'single quotes' and `backticks` -- em—dash, ellipsis… «guillemets» „Anführung“.",
		"Prices: $5.99, €12,50, £3, ¥1000; e-mail: someone@example.com; URL https://example.org/a?b=c&d=e#f",
		"Ünïcödé àccents, Straße, naïve café, Ångström, ﬁligree (ligature), ＦＵＬＬＷＩＤＴＨ letters.",
		"Numbers: 0 1 2 12 123 1234 12345 ² ³ ½ Ⅻ ٣٤٥ ०१२ and 1e-9, 0x1F, 007.",
		"Лев Толстой написал «Войну и мир». Ελληνικά γράμματα. مرحبا بالعالم. नमस्ते दुनिया. สวัสดีชาวโลก",
	}
	code = []string{
		"func main() {\n\tfmt.Println(\"hello, world\")\n}\n",
		"def f(x):\n    if x != 0 and x >= -1:\n        return x ** 2  # square\n    return None\n",
		"for (let i = 0; i < n; i++) { sum += a[i] * b[i]; }  // dot\n",
		"#include <stdio.h>\nint main(void) { return printf(\"%d\\n\", 1 << 3) > 0 ? 0 : 1; }\n",
		"x := map[string][]int{\"a\": {1, 2}}; y, ok := x[\"b\"]; _ = y && ok || !ok\n",
		"SELECT id, name FROM users WHERE age > 30 ORDER BY name DESC;\n",
		"<div class=\"row\"><span id='x'>&amp;&lt;&gt;</span></div>\n",
		"    \t  mixed_indent = [1,2,3]\r\n\r\n",
		"fn parse<'a>(s: &'a str) -> Result<Vec<u8>, Box<dyn Error>> { Ok(s.as_bytes().to_vec()) }\n",
	}
	cjk = []string{
		"我们的模型可以处理中文文本，包括标点符号。",
		"日本語のテキストも、ひらがなとカタカナと漢字で書かれています。",
		"한국어 문장도 잘 처리됩니다.",
		"中文和English混合的句子123个。",
		"　全角スペース　と半角 スペース",
	}
	emoji = []string{
		"😀", "👍🏽", "👩‍💻", "🇯🇵", "❤️", "🎉🎉🎉", "🤖 robots!", "🧑‍🤝‍🧑", "☃", "✔︎", "🙂🙃",
	}
	spaces = []string{
		" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", " \n ", "\r\n", "        ", "\u00a0", "\u3000", " \t \n", "\n    ",
	}
)

// Mixed returns about n bytes of deterministic mixed text (prose, code, CJK,
// emoji, whitespace runs, numbers) for seed. The text is valid UTF-8.
func Mixed(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var sb strings.Builder
	pools := [][]string{prose, prose, code, cjk, emoji, spaces}
	for sb.Len() < n {
		pool := pools[rng.IntN(len(pools))]
		sb.WriteString(pool[rng.IntN(len(pool))])
		switch rng.IntN(6) {
		case 0:
			sb.WriteString(spaces[rng.IntN(len(spaces))])
		case 1:
			sb.WriteString(" ")
		}
	}
	return []byte(sb.String())
}

// alphabet is the character set RandomText draws from: the edges of the
// pre-tokenizer (contractions, spaces of all kinds, letters, digits, marks).
var alphabet = []string{
	"a", "b", "Z", "s", "t", "re", "ve", "ll", "d", "m", "'", "'s", "'re", "'ll", "’",
	" ", " ", " ", "  ", "\t", "\n", "\r", "\v", "\f", "\u00a0", "\u0085", "\u2003", "\u3000", "\u2028",
	"0", "7", "42", "½", "²", "Ⅻ", "٣",
	".", ",", "!", "?", "-", "_", "(", ")", "{", "}", "\"", "#", "@", "$", "%", "&", "*", "/", "\\",
	"é", "ß", "ж", "λ", "中", "文", "の", "한", "\u0301", "\u093f", "😀", "👍🏽", "\u200d", "\ufe0f", "\x00",
}

// RandomText returns a random string of up to maxParts alphabet items: short,
// dense in the pre-tokenizer's corner cases. It is valid UTF-8.
func RandomText(rng *rand.Rand, maxParts int) string {
	k := rng.IntN(maxParts + 1)
	var sb strings.Builder
	for range k {
		sb.WriteString(alphabet[rng.IntN(len(alphabet))])
	}
	return sb.String()
}
