package tokentest

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	tiktoken "github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// CL100KPattern is cl100k_base's pre-tokenizer expression as tiktoken-go
// declares it; Llama 3's tokenizer.json Split uses the same one.
const CL100KPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// Qwen2Pattern is Qwen2's: cl100k's with single digits.
const Qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

var (
	cl100kOnce sync.Once
	cl100kEnc  *tiktoken.Tiktoken
	cl100kErr  error
)

// CL100K returns tiktoken-go's cl100k_base encoding, loaded offline from the
// ranks embedded in tiktoken-go-loader.
func CL100K() (*tiktoken.Tiktoken, error) {
	cl100kOnce.Do(func() {
		tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader())
		cl100kEnc, cl100kErr = tiktoken.GetEncoding("cl100k_base")
	})
	return cl100kEnc, cl100kErr
}

// CL100KSpecial are cl100k_base's special tokens and ids.
var CL100KSpecial = map[string]int{
	"<|endoftext|>":   100257,
	"<|fim_prefix|>":  100258,
	"<|fim_middle|>":  100259,
	"<|fim_suffix|>":  100260,
	"<|endofprompt|>": 100276,
}

// WriteCL100KTokenizerJSON writes cl100k_base as a Hugging Face
// tokenizer.json in Llama 3's layout: a Split pre-tokenizer with
// CL100KPattern then ByteLevel without its own regex, ignore_merges, and
// the merges Hugging Face's TikTokenConverter derives from ranks (every split
// of a token into two tokens, ordered by the token's rank, then the parts'
// ranks). The ids cl100k leaves unused between its special tokens are
// filled with "<|reserved_N|>" special tokens, as Llama 3 fills its own.
func WriteCL100KTokenizerJSON(path string) error {
	return WriteCL100KTokenizerJSONPattern(path, CL100KPattern)
}

// WriteCL100KTokenizerJSONPattern is WriteCL100KTokenizerJSON with another
// Split pattern (benchmarks wrap CL100KPattern in a group so that the
// tokenizer runs it through regexp2 instead of its hand-written splitter).
func WriteCL100KTokenizerJSONPattern(path, pattern string) error {
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken")
	if err != nil {
		return fmt.Errorf("cl100k ranks: %w", err)
	}
	enc := gpt2ByteEncoder()
	show := func(s string) string {
		var sb strings.Builder
		for i := 0; i < len(s); i++ {
			sb.WriteRune(enc[s[i]])
		}
		return sb.String()
	}
	type mergeRow struct {
		l, r       string
		rank, a, b int
	}
	var merges []mergeRow
	vocab := make(map[string]int, len(ranks))
	for tok, rank := range ranks {
		vocab[show(tok)] = rank
		for i := 1; i < len(tok); i++ {
			a, okA := ranks[tok[:i]]
			b, okB := ranks[tok[i:]]
			if okA && okB {
				merges = append(merges, mergeRow{tok[:i], tok[i:], rank, a, b})
			}
		}
	}
	sort.Slice(merges, func(i, j int) bool {
		x, y := merges[i], merges[j]
		if x.rank != y.rank {
			return x.rank < y.rank
		}
		if x.a != y.a {
			return x.a < y.a
		}
		return x.b < y.b
	})
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		Lstrip     bool   `json:"lstrip"`
		Rstrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var adds []added
	byID := map[int]string{}
	for s, id := range CL100KSpecial {
		byID[id] = s
	}
	for id, k := len(ranks), 0; id <= 100276; id++ {
		s, ok := byID[id]
		if !ok {
			s = fmt.Sprintf("<|reserved_%d|>", k)
			k++
		}
		adds = append(adds, added{ID: id, Content: s, Special: true})
	}
	mergeList := make([][2]string, len(merges))
	for i, m := range merges {
		mergeList[i] = [2]string{show(m.l), show(m.r)}
	}
	doc := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": adds,
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{
			"type": "Sequence",
			"pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"Regex": pattern}, "behavior": "Isolated", "invert": false},
				map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
			},
		},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": true,
			"vocab": vocab, "merges": mergeList,
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
