package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// hfFile is the subset of a Hugging Face tokenizer.json that a byte-level
// BPE needs. Other fields (normalizer, post_processor, ...) are ignored on
// load; Save writes GPT-2's values for them.
type hfFile struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        struct {
		Type                    string            `json:"type"`
		Vocab                   map[string]int    `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
		ByteFallback            bool              `json:"byte_fallback"`
	} `json:"model"`
}

// hfPreTokenizer is one pre_tokenizer node (possibly a Sequence).
type hfPreTokenizer struct {
	Type           string           `json:"type"`
	AddPrefixSpace bool             `json:"add_prefix_space"`
	UseRegex       *bool            `json:"use_regex"`
	PreTokenizers  []hfPreTokenizer `json:"pretokenizers"`
}

// LoadHF reads a Hugging Face tokenizer.json holding a byte-level BPE model
// (GPT-2's layout). Tokenizers that would split text differently (another
// pre-tokenizer, a prefix space, a normalizer) are refused with an error
// rather than silently encoding differently.
func LoadHF(path string) (*BPE, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	t, err := parseHF(data)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	return t, nil
}

func parseHF(data []byte) (*BPE, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Model.Type != "BPE" && f.Model.Type != "" {
		return nil, fmt.Errorf("model type %q is not supported (want BPE)", f.Model.Type)
	}
	if f.Model.Vocab == nil {
		return nil, fmt.Errorf("model.vocab is missing")
	}
	if p := f.Model.ContinuingSubwordPrefix; p != nil && *p != "" {
		return nil, fmt.Errorf("continuing_subword_prefix %q is not supported", *p)
	}
	if s := f.Model.EndOfWordSuffix; s != nil && *s != "" {
		return nil, fmt.Errorf("end_of_word_suffix %q is not supported", *s)
	}
	if f.Model.ByteFallback {
		return nil, fmt.Errorf("byte_fallback BPE is not byte-level BPE")
	}
	if n := bytes.TrimSpace(f.Normalizer); len(n) > 0 && string(n) != "null" {
		return nil, fmt.Errorf("normalizer %s is not supported", n)
	}
	if err := checkPreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	merges := make([][2]string, len(f.Model.Merges))
	for i, raw := range f.Model.Merges {
		// Older files write "left right", newer ones ["left", "right"].
		var s string
		var pair []string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			parts := strings.Split(s, " ")
			if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
				return nil, fmt.Errorf("merge %d: want two tokens separated by one space, got %q", i+1, s)
			}
			merges[i] = [2]string{parts[0], parts[1]}
		case json.Unmarshal(raw, &pair) == nil:
			if len(pair) != 2 || pair[0] == "" || pair[1] == "" {
				return nil, fmt.Errorf("merge %d: want a pair of tokens, got %s", i+1, raw)
			}
			merges[i] = [2]string{pair[0], pair[1]}
		default:
			return nil, fmt.Errorf("merge %d: want a string or a pair, got %s", i+1, raw)
		}
	}
	special := make(map[string]int)
	for _, a := range f.AddedTokens {
		if !a.Special {
			return nil, fmt.Errorf("added token %q is not special; only special added tokens are supported", a.Content)
		}
		special[a.Content] = a.ID
	}
	return build(f.Model.Vocab, merges, special)
}

// checkPreTokenizer accepts GPT-2's ByteLevel pre-tokenizer (alone or as the
// only member of a Sequence) without a prefix space, or none at all.
func checkPreTokenizer(raw json.RawMessage) error {
	if n := bytes.TrimSpace(raw); len(n) == 0 || string(n) == "null" {
		return fmt.Errorf("pre_tokenizer is missing; a byte-level BPE needs ByteLevel")
	}
	var p hfPreTokenizer
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("pre_tokenizer: %w", err)
	}
	if p.Type == "Sequence" && len(p.PreTokenizers) == 1 {
		p = p.PreTokenizers[0]
	}
	if p.Type != "ByteLevel" {
		return fmt.Errorf("pre_tokenizer %q is not supported (want ByteLevel)", p.Type)
	}
	if p.AddPrefixSpace {
		return fmt.Errorf("pre_tokenizer ByteLevel with add_prefix_space=true is not supported")
	}
	if p.UseRegex != nil && !*p.UseRegex {
		return fmt.Errorf("pre_tokenizer ByteLevel with use_regex=false is not supported")
	}
	return nil
}

// hfJSON renders tokenizer.json in the layout Hugging Face tokenizers writes
// for GPT-2 (merges as "left right" strings, readable by every version).
func (t *BPE) hfJSON() []byte {
	var b bytes.Buffer
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	first := true
	for id := range t.tokens {
		if !t.isSpecial[id] {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		fmt.Fprintf(&b, "\n    {\"id\": %d, \"content\": %s, \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}",
			id, jsonString(string(t.tokens[id])))
	}
	b.WriteString("\n  ],\n  \"normalizer\": null,\n")
	b.WriteString("  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n")
	b.WriteString("  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true},\n")
	b.WriteString("  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n")
	b.WriteString("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"vocab\": ")
	vocab := bytes.ReplaceAll(bytes.TrimRight(t.vocabJSON(), "\n"), []byte("\n"), []byte("\n    "))
	b.Write(vocab)
	b.WriteString(",\n    \"merges\": [")
	for i, m := range t.mergeList {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      ")
		b.Write(jsonString(byteLevelEncode(t.tokens[m[0]]) + " " + byteLevelEncode(t.tokens[m[1]])))
	}
	b.WriteString("\n    ]\n  }\n}\n")
	return b.Bytes()
}
