package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/dlclark/regexp2"
)

// Tokenizer kinds (see Kind).
const (
	KindBytes         = "bytes"             // Bytes: one token per byte
	KindGPT2          = "gpt2"              // byte-level BPE with GPT-2's pre-tokenizer
	KindByteLevel     = "byte-level"        // byte-level BPE with another pipeline (Llama 3, Qwen2, SmolLM)
	KindSentencePiece = "sentencepiece-bpe" // "▁" word marks, <0xNN> byte fallback (Llama 2, Mistral)
)

// hfFile is the part of a Hugging Face tokenizer.json that encoding and
// decoding depend on. The post-processor only adds special tokens around an
// encoding (Encode never does), so it is read just for the BOS token.
type hfFile struct {
	AddedTokens   []hfAdded       `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type                    string            `json:"type"`
		Vocab                   map[string]int    `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
		Dropout                 *float64          `json:"dropout"`
		UnkToken                *string           `json:"unk_token"`
		FuseUnk                 bool              `json:"fuse_unk"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
	} `json:"model"`
}

type hfAdded struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	Special    bool   `json:"special"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
}

// hfNode is one normalizer, pre-tokenizer or decoder (the fields of all the
// supported types; each type reads its own).
type hfNode struct {
	Type          string            `json:"type"`
	Normalizers   []json.RawMessage `json:"normalizers"`
	PreTokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`
	// ByteLevel
	AddPrefixSpace *bool `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"`
	// Split, Replace
	Pattern *struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Behavior string `json:"behavior"`
	Invert   bool   `json:"invert"`
	Content  string `json:"content"`
	// Digits
	IndividualDigits bool `json:"individual_digits"`
	// Metaspace
	Replacement   string `json:"replacement"`
	PrependScheme string `json:"prepend_scheme"`
	Split         *bool  `json:"split"`
	// Prepend
	Prepend string `json:"prepend"`
	// Strip
	Start int `json:"start"`
	Stop  int `json:"stop"`
}

// Supported component types, for the errors naming them.
const (
	supportedNormalizers   = "NFC, Prepend, Replace, Sequence"
	supportedPreTokenizers = "ByteLevel, Split, Digits, Metaspace, Sequence"
	supportedDecoders      = "ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence"
)

// LoadHF reads a Hugging Face tokenizer.json holding a BPE model: byte-level
// (GPT-2, Llama 3, Qwen2, SmolLM) or SentencePiece-style with byte fallback
// (Llama 2, TinyLlama, Mistral). Components of other types are refused with
// an error naming them rather than silently encoding differently. BOS and
// EOS come from the post-processor's template and the usual token names;
// LoadDir also reads tokenizer_config.json.
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

func isNull(raw json.RawMessage) bool {
	n := bytes.TrimSpace(raw)
	return len(n) == 0 || string(n) == "null"
}

func parseHF(data []byte) (*BPE, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	m := &f.Model
	if m.Type != "BPE" && m.Type != "" {
		return nil, fmt.Errorf("model type %q is not supported (supported: BPE)", m.Type)
	}
	if m.Vocab == nil {
		return nil, fmt.Errorf("model.vocab is missing")
	}
	if p := m.ContinuingSubwordPrefix; p != nil && *p != "" {
		return nil, fmt.Errorf("continuing_subword_prefix %q is not supported", *p)
	}
	if s := m.EndOfWordSuffix; s != nil && *s != "" {
		return nil, fmt.Errorf("end_of_word_suffix %q is not supported", *s)
	}
	if d := m.Dropout; d != nil && *d != 0 {
		return nil, fmt.Errorf("BPE dropout %g is not supported (encoding would be random)", *d)
	}
	pipe := &pipeline{}
	var desc strings.Builder
	byteLvl, err := parsePreTokenizer(f.PreTokenizer, pipe, &desc)
	if err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if err := parseNormalizer(f.Normalizer, pipe, &desc); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	dec := &hfDecoder{}
	if err := parseDecoder(f.Decoder, dec, byteLvl); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	if !byteLvl && !m.ByteFallback && m.UnkToken == nil {
		return nil, fmt.Errorf("a BPE without a ByteLevel pre-tokenizer needs byte_fallback or an unk_token")
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}

	// Ids: model.vocab, then added tokens (which may repeat vocab entries,
	// as Llama 2's <s> does, or extend it, as Llama 3's do).
	n := 0
	for _, id := range m.Vocab {
		n = max(n, id+1)
	}
	for _, a := range f.AddedTokens {
		n = max(n, a.ID+1)
	}
	if n > 1<<28 {
		return nil, fmt.Errorf("vocabulary ids up to %d are too large", n-1)
	}
	syms := make([][]byte, n)
	tokens := make([][]byte, n)
	names := make([]string, n)
	put := func(text string, id int) error {
		if id < 0 {
			return fmt.Errorf("token %q has negative id %d", text, id)
		}
		if names[id] != "" && names[id] != text {
			return fmt.Errorf("id %d is used by both %q and %q", id, names[id], text)
		}
		names[id] = text
		return nil
	}
	for text, id := range m.Vocab {
		if err := put(text, id); err != nil {
			return nil, err
		}
		if !byteLvl {
			syms[id] = []byte(text)
			tokens[id] = dec.token(text)
			continue
		}
		if b, err := byteLevelDecode(text); err == nil {
			syms[id], tokens[id] = b, b
		}
	}
	var special, added []int
	for _, a := range f.AddedTokens {
		if a.SingleWord || a.Lstrip || a.Rstrip {
			return nil, fmt.Errorf("added token %q: single_word, lstrip and rstrip are not supported", a.Content)
		}
		if a.Content == "" {
			return nil, fmt.Errorf("added token %d has no content", a.ID)
		}
		if err := put(a.Content, a.ID); err != nil {
			return nil, err
		}
		tokens[a.ID] = []byte(a.Content)
		if syms[a.ID] == nil {
			syms[a.ID] = tokens[a.ID]
		}
		if a.Special {
			special = append(special, a.ID)
		} else {
			added = append(added, a.ID)
		}
	}
	for id := range n {
		if names[id] == "" {
			return nil, fmt.Errorf("no token has id %d; ids must be 0..%d with none missing", id, n-1)
		}
		if syms[id] == nil {
			return nil, fmt.Errorf("vocabulary entry %q (id %d) is not a byte-level string", names[id], id)
		}
	}
	pairs := make([][2]int, len(merges))
	for r, mg := range merges {
		for k, s := range mg {
			id, ok := m.Vocab[s]
			if !ok {
				return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary", r+1, mg[0], mg[1], s)
			}
			pairs[r][k] = id
		}
	}
	sort.Ints(special)
	sort.Ints(added)
	t, err := newBPE(tokens, syms, pairs, special, added, !byteLvl)
	if err != nil {
		return nil, err
	}
	t.ignoreMerges = m.IgnoreMerges
	t.stripStart, t.stripEnd, t.stripChar = dec.stripStart, dec.stripEnd, dec.stripChar
	t.raw = append([]byte(nil), data...)
	if !byteLvl {
		t.byteFallback, t.fuseUnk = m.ByteFallback, m.FuseUnk
		if m.UnkToken != nil {
			id, ok := m.Vocab[*m.UnkToken]
			if !ok {
				return nil, fmt.Errorf("unk_token %q is not in the vocabulary", *m.UnkToken)
			}
			t.unk = int32(id)
		}
		if t.byteFallback {
			for b, id := range t.byteID {
				if id < 0 {
					return nil, fmt.Errorf("byte_fallback is set but the vocabulary has no <0x%02X>", b)
				}
			}
		}
	}
	fmt.Fprintf(&desc, "decoder:%s;fallback=%v;unk=%d;fuse=%v;ignore_merges=%v", dec.desc, t.byteFallback, t.unk, t.fuseUnk, t.ignoreMerges)
	switch {
	case !byteLvl:
		t.kind = KindSentencePiece
	case len(pipe.norm) == 0 && pipe.meta == nil && len(pipe.stages) == 1 && pipe.stages[0] == (byteLevel{useRegex: true}) && !t.ignoreMerges:
		t.kind, pipe = KindGPT2, nil // GPT-2's split: the hand-written fast path
		desc.Reset()
		desc.WriteString("gpt2")
	default:
		t.kind = KindByteLevel
	}
	if pipe != nil {
		// A ByteLevel stage without regex or prefix space splits nothing
		// (its byte mapping is implicit): drop it from the hot path.
		kept := pipe.stages[:0]
		for _, s := range pipe.stages {
			if s != (byteLevel{}) {
				kept = append(kept, s)
			}
		}
		pipe.stages = kept
	}
	if t.chars && len(pipe.stages) == 0 && (pipe.meta == nil || !pipe.meta.split) {
		mark := []byte("\u2581")
		if pipe.meta != nil {
			mark = pipe.meta.repl
		}
		if marksOnlyLead(t, mark) {
			pipe.stages = append(pipe.stages, markSplit{mark: mark})
		}
	}
	t.pipe, t.desc = pipe, desc.String()
	if pipe != nil {
		pipe.cut = streamCutRule(t)
	}
	t.bos, t.eos = templateBOS(t, f.PostProcessor), -1
	t.defaultSpecials()
	return t, nil
}

// defaultSpecials fills in BOS and EOS by the usual names when unset.
func (t *BPE) defaultSpecials() {
	pick := func(names ...string) int {
		for _, s := range names {
			if id, ok := t.SpecialID(s); ok {
				return id
			}
		}
		return -1
	}
	if t.bos < 0 {
		t.bos = pick("<s>", "<|begin_of_text|>", EndOfText)
	}
	if t.eos < 0 {
		t.eos = pick("</s>", "<|end_of_text|>", EndOfText)
	}
}

// templateBOS returns the special token a TemplateProcessing post-processor
// puts in front of a single sequence (Llama's "<s>"), or -1.
func templateBOS(t *BPE, raw json.RawMessage) int {
	type proc struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		} `json:"single"`
	}
	var p proc
	if isNull(raw) || json.Unmarshal(raw, &p) != nil {
		return -1
	}
	if p.Type == "Sequence" {
		for _, sub := range p.Processors {
			if id := templateBOS(t, sub); id >= 0 {
				return id
			}
		}
		return -1
	}
	if p.Type != "TemplateProcessing" || len(p.Single) == 0 || p.Single[0].SpecialToken == nil {
		return -1
	}
	if id, ok := t.SpecialID(p.Single[0].SpecialToken.ID); ok {
		return id
	}
	return -1
}

// parseMerges reads model.merges: "left right" strings (older files) or
// ["left", "right"] pairs (newer ones).
func parseMerges(raws []json.RawMessage) ([][2]string, error) {
	merges := make([][2]string, len(raws))
	for i, raw := range raws {
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
	return merges, nil
}

// parsePreTokenizer appends raw's stages to pipe and reports whether the
// model is byte-level (a ByteLevel pre-tokenizer is present).
func parsePreTokenizer(raw json.RawMessage, pipe *pipeline, desc *strings.Builder) (bool, error) {
	if isNull(raw) {
		desc.WriteString("pre:none;")
		return false, nil
	}
	var p hfNode
	if err := json.Unmarshal(raw, &p); err != nil {
		return false, err
	}
	switch p.Type {
	case "Sequence":
		byteLvl := false
		for _, sub := range p.PreTokenizers {
			b, err := parsePreTokenizer(sub, pipe, desc)
			if err != nil {
				return false, err
			}
			byteLvl = byteLvl || b
		}
		if pipe.meta != nil && len(pipe.stages) > 0 {
			return false, fmt.Errorf("Metaspace combined with other pre-tokenizers is not supported")
		}
		return byteLvl, nil
	case "ByteLevel":
		b := byteLevel{prefixSpace: p.AddPrefixSpace != nil && *p.AddPrefixSpace, useRegex: p.UseRegex == nil || *p.UseRegex}
		pipe.stages = append(pipe.stages, b)
		fmt.Fprintf(desc, "pre:bytelevel(prefix=%v,regex=%v);", b.prefixSpace, b.useRegex)
		return true, nil
	case "Split":
		if p.Invert {
			return false, fmt.Errorf("Split with invert=true is not supported")
		}
		switch p.Behavior {
		case behaviorIsolated, behaviorRemoved, behaviorMergedWithPrevious, behaviorMergedWithNext:
		default:
			return false, fmt.Errorf("Split behavior %q is not supported (supported: Isolated, Removed, MergedWithPrevious, MergedWithNext)", p.Behavior)
		}
		var expr string
		switch {
		case p.Pattern != nil && p.Pattern.Regex != nil:
			expr = *p.Pattern.Regex
		case p.Pattern != nil && p.Pattern.String != nil:
			expr = regexp2.Escape(*p.Pattern.String)
		default:
			return false, fmt.Errorf("Split needs a String or Regex pattern")
		}
		if expr == "" {
			return false, fmt.Errorf("Split has an empty pattern")
		}
		pipe.stages = append(pipe.stages, newRegexSplitter(expr, p.Behavior))
		if pipe.stages[len(pipe.stages)-1] == nil {
			re, err := regexp2.Compile(expr, regexp2.None)
			if err != nil {
				return false, fmt.Errorf("Split pattern %q: %w", expr, err)
			}
			pipe.stages[len(pipe.stages)-1] = regexSplit{re: re, behavior: p.Behavior}
		}
		fmt.Fprintf(desc, "pre:split(%q,%s);", expr, p.Behavior)
		return false, nil
	case "Digits":
		pipe.stages = append(pipe.stages, digits{individual: p.IndividualDigits})
		fmt.Fprintf(desc, "pre:digits(individual=%v);", p.IndividualDigits)
		return false, nil
	case "Metaspace":
		if len(pipe.stages) > 0 {
			return false, fmt.Errorf("Metaspace combined with other pre-tokenizers is not supported")
		}
		ms, err := parseMetaspace(p)
		if err != nil {
			return false, err
		}
		pipe.meta = ms
		fmt.Fprintf(desc, "pre:metaspace(%q,%s,split=%v);", ms.repl, ms.scheme, ms.split)
		return false, nil
	}
	return false, fmt.Errorf("type %q is not supported (supported: %s)", p.Type, supportedPreTokenizers)
}

func parseMetaspace(p hfNode) (*metaspace, error) {
	if p.Replacement == "" {
		return nil, fmt.Errorf("Metaspace has no replacement")
	}
	ms := &metaspace{repl: []byte(p.Replacement), scheme: p.PrependScheme, split: p.Split == nil || *p.Split}
	if ms.scheme == "" { // older files: add_prefix_space
		ms.scheme = "never"
		if p.AddPrefixSpace == nil || *p.AddPrefixSpace {
			ms.scheme = "always"
		}
	}
	switch ms.scheme {
	case "always", "first", "never":
	default:
		return nil, fmt.Errorf("Metaspace prepend_scheme %q is not supported (supported: always, first, never)", ms.scheme)
	}
	return ms, nil
}

// parseNormalizer appends raw's normalizers to pipe.
func parseNormalizer(raw json.RawMessage, pipe *pipeline, desc *strings.Builder) error {
	if isNull(raw) {
		return nil
	}
	var p hfNode
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	switch p.Type {
	case "Sequence":
		for _, sub := range p.Normalizers {
			if err := parseNormalizer(sub, pipe, desc); err != nil {
				return err
			}
		}
		return nil
	case "NFC":
		pipe.norm = append(pipe.norm, nfc{})
		desc.WriteString("norm:nfc;")
		return nil
	case "Prepend":
		if p.Prepend == "" {
			return fmt.Errorf("Prepend has no text")
		}
		pipe.norm = append(pipe.norm, prepend{text: []byte(p.Prepend)})
		fmt.Fprintf(desc, "norm:prepend(%q);", p.Prepend)
		return nil
	case "Replace":
		if p.Pattern == nil || p.Pattern.String == nil || *p.Pattern.String == "" {
			return fmt.Errorf("Replace needs a non-empty String pattern (Regex patterns are not supported)")
		}
		pipe.norm = append(pipe.norm, replace{old: []byte(*p.Pattern.String), new: []byte(p.Content)})
		fmt.Fprintf(desc, "norm:replace(%q,%q);", *p.Pattern.String, p.Content)
		return nil
	}
	return fmt.Errorf("type %q is not supported (supported: %s)", p.Type, supportedNormalizers)
}

// hfDecoder is a parsed decoder: how a SentencePiece-style piece turns into
// text (replacements, byte fallback) and what Strip removes from the whole.
type hfDecoder struct {
	byteLevel            bool
	replaces             [][2]string
	byteFallback, fused  bool
	stripStart, stripEnd int
	stripChar            byte
	desc                 string
}

// token is what a SentencePiece-style vocabulary entry decodes to.
func (d *hfDecoder) token(piece string) []byte {
	if b, ok := byteFallbackToken([]byte(piece)); ok && d.byteFallback {
		return []byte{b}
	}
	for _, r := range d.replaces {
		piece = strings.ReplaceAll(piece, r[0], r[1])
	}
	return []byte(piece)
}

// parseDecoder reads raw into d. A byte-level model needs the ByteLevel
// decoder; a SentencePiece-style one a chain of Replace, ByteFallback, Fuse
// and Strip (Llama 2) or Metaspace.
func parseDecoder(raw json.RawMessage, d *hfDecoder, byteLvl bool) error {
	if isNull(raw) {
		return fmt.Errorf("decoder is missing")
	}
	var p hfNode
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	list := []hfNode{p}
	if p.Type == "Sequence" {
		list = list[:0]
		for _, sub := range p.Decoders {
			var q hfNode
			if err := json.Unmarshal(sub, &q); err != nil {
				return err
			}
			list = append(list, q)
		}
	}
	for _, q := range list {
		switch q.Type {
		case "ByteLevel":
			if !byteLvl {
				return fmt.Errorf("ByteLevel decoder needs a ByteLevel pre-tokenizer")
			}
			d.byteLevel = true
		case "Replace":
			if q.Pattern == nil || q.Pattern.String == nil || *q.Pattern.String == "" {
				return fmt.Errorf("Replace needs a non-empty String pattern (Regex patterns are not supported)")
			}
			d.replaces = append(d.replaces, [2]string{*q.Pattern.String, q.Content})
		case "ByteFallback":
			d.byteFallback = true
		case "Fuse":
			d.fused = true
		case "Strip":
			if len(q.Content) != 1 {
				return fmt.Errorf("Strip content %q is not a single ASCII character", q.Content)
			}
			if !d.fused {
				return fmt.Errorf("Strip before Fuse (per token) is not supported")
			}
			d.stripStart, d.stripEnd, d.stripChar = q.Start, q.Stop, q.Content[0]
		case "Metaspace":
			ms, err := parseMetaspace(q)
			if err != nil {
				return err
			}
			d.replaces = append(d.replaces, [2]string{string(ms.repl), " "})
			if ms.scheme != "never" {
				d.stripStart, d.stripChar = 1, ' '
			}
		default:
			return fmt.Errorf("type %q is not supported (supported: %s)", q.Type, supportedDecoders)
		}
	}
	if byteLvl && (!d.byteLevel || len(list) != 1) {
		return fmt.Errorf("a byte-level model needs the ByteLevel decoder alone")
	}
	if d.stripStart < 0 || d.stripEnd < 0 {
		return fmt.Errorf("Strip counts must not be negative")
	}
	d.desc = fmt.Sprintf("replace%q,fallback=%v,strip=%d/%d/%q", d.replaces, d.byteFallback, d.stripStart, d.stripEnd, d.stripChar)
	if byteLvl {
		d.desc = "bytelevel"
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
