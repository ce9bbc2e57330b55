package tokentest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	tiktoken "github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// EndOfText is GPT-2's only special token, id 50256 in r50k_base.
const EndOfText = "<|endoftext|>"

var (
	r50kOnce sync.Once
	r50kEnc  *tiktoken.Tiktoken
	r50kErr  error
)

// R50K returns tiktoken-go's r50k_base (GPT-2) encoding, loaded offline from
// the ranks embedded in tiktoken-go-loader.
func R50K() (*tiktoken.Tiktoken, error) {
	r50kOnce.Do(func() {
		tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader())
		r50kEnc, r50kErr = tiktoken.GetEncoding("r50k_base")
	})
	return r50kEnc, r50kErr
}

// R50KRanks returns the r50k_base mergeable ranks: token bytes -> rank (the
// token id), 50256 entries.
func R50KRanks() (map[string]int, error) {
	return tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe("https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken")
}

// WriteGPT2Files writes GPT-2's vocab.json and merges.txt into dir, derived
// from the r50k ranks the way tiktoken's own converter relates the two: the
// merge that creates token r is found by running BPE on its bytes with only
// the ranks below r, which leaves exactly two parts. The byte-to-character
// table is written out here independently of package tokenizer.
func WriteGPT2Files(dir string) error {
	ranks, err := R50KRanks()
	if err != nil {
		return fmt.Errorf("r50k ranks: %w", err)
	}
	byRank := make([]string, len(ranks))
	for tok, r := range ranks {
		if r < 0 || r >= len(byRank) || byRank[r] != "" {
			return fmt.Errorf("r50k ranks are not a permutation at %d", r)
		}
		byRank[r] = tok
	}
	enc := gpt2ByteEncoder()
	show := func(s string) string {
		var sb strings.Builder
		for i := 0; i < len(s); i++ {
			sb.WriteRune(enc[s[i]])
		}
		return sb.String()
	}
	vocab := make(map[string]int, len(ranks)+1)
	for r, tok := range byRank {
		vocab[show(tok)] = r
	}
	vocab[EndOfText] = len(byRank)
	var merges strings.Builder
	merges.WriteString("#version: 0.2\n")
	for r := 256; r < len(byRank); r++ {
		parts := bpeParts(byRank[r], ranks, r)
		if len(parts) != 2 {
			return fmt.Errorf("token %d %q does not split into a merge: %q", r, byRank[r], parts)
		}
		fmt.Fprintf(&merges, "%s %s\n", show(parts[0]), show(parts[1]))
	}
	vj, err := json.Marshal(vocab)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "vocab.json"), vj, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "merges.txt"), []byte(merges.String()), 0o644)
}

// bpeParts runs tiktoken-style BPE on tok using only ranks below maxRank.
func bpeParts(tok string, ranks map[string]int, maxRank int) []string {
	parts := make([]string, len(tok))
	for i := 0; i < len(tok); i++ {
		parts[i] = tok[i : i+1]
	}
	for len(parts) > 1 {
		best, at := -1, -1
		for i := 0; i+1 < len(parts); i++ {
			if r, ok := ranks[parts[i]+parts[i+1]]; ok && r < maxRank && (at < 0 || r < best) {
				best, at = r, i
			}
		}
		if at < 0 {
			break
		}
		parts[at] += parts[at+1]
		parts = append(parts[:at+1], parts[at+2:]...)
	}
	return parts
}

// gpt2ByteEncoder is GPT-2's bytes_to_unicode, transcribed from encoder.py.
func gpt2ByteEncoder() map[byte]rune {
	var bs []int
	for b := int('!'); b <= int('~'); b++ {
		bs = append(bs, b)
	}
	for b := 0xA1; b <= 0xAC; b++ {
		bs = append(bs, b)
	}
	for b := 0xAE; b <= 0xFF; b++ {
		bs = append(bs, b)
	}
	cs := make([]int, len(bs))
	copy(cs, bs)
	in := map[int]bool{}
	for _, b := range bs {
		in[b] = true
	}
	n := 0
	for b := 0; b < 256; b++ {
		if !in[b] {
			bs = append(bs, b)
			cs = append(cs, 256+n)
			n++
		}
	}
	m := make(map[byte]rune, 256)
	for i, b := range bs {
		m[byte(b)] = rune(cs[i])
	}
	return m
}
