package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// File names inside a tokenizer directory.
const (
	VocabFile       = "vocab.json"     // GPT-2: {"byte-level token": id}
	MergesFile      = "merges.txt"     // GPT-2: "#version: 0.2" then "left right" per line
	HFTokenizerFile = "tokenizer.json" // Hugging Face tokenizers, BPE model
)

// Load reads a tokenizer from path: a directory (see LoadDir), the path of a
// tokenizer.json file, or the path of a vocab.json with merges.txt beside it.
func Load(path string) (*BPE, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	if !fi.IsDir() {
		if filepath.Base(path) == VocabFile {
			return LoadGPT2(path, filepath.Join(filepath.Dir(path), MergesFile))
		}
		return LoadHF(path)
	}
	return LoadDir(path)
}

// LoadGPT2 reads the GPT-2 file pair. Vocabulary entries that are neither a
// single byte nor the result of a merge (GPT-2's "<|endoftext|>") become
// special tokens; their text is taken literally when it is not a byte-level
// string.
func LoadGPT2(vocabPath, mergesPath string) (*BPE, error) {
	vf, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(vf, &vocab); err != nil {
		return nil, fmt.Errorf("load tokenizer: %s: %w", vocabPath, err)
	}
	mf, err := os.Open(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	defer mf.Close()
	merges, err := readMerges(mf)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %s: %w", mergesPath, err)
	}
	t, err := build(vocab, merges, nil)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", filepath.Dir(vocabPath), err)
	}
	return t, nil
}

// readMerges parses merges.txt: an optional "#version" line, then one merge
// per line as two byte-level strings separated by a single space.
func readMerges(r io.Reader) ([][2]string, error) {
	var out [][2]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), "\r")
		if line == 1 && strings.HasPrefix(s, "#version") {
			continue
		}
		if s == "" {
			continue
		}
		parts := strings.Split(s, " ")
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("line %d: want two tokens separated by one space, got %q", line, s)
		}
		out = append(out, [2]string{parts[0], parts[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return out, nil
}

// build assembles a BPE from file-level data: vocab maps byte-level strings
// to ids, merges are byte-level string pairs in rank order, and special (may
// be nil) maps literal special texts to ids (tokenizer.json's added tokens).
func build(vocab map[string]int, merges [][2]string, special map[string]int) (*BPE, error) {
	n := len(vocab)
	for text := range special {
		if _, ok := vocab[text]; !ok {
			n++ // an added token missing from model.vocab still takes an id
		}
	}
	tokens := make([][]byte, n)
	literal := make([]bool, n) // id's text could not be read as byte-level
	seen := make([]string, n)
	put := func(text string, id int) error {
		if id < 0 || id >= n {
			return fmt.Errorf("token %q has id %d; ids must be 0..%d with none missing", text, id, n-1)
		}
		if seen[id] != "" && seen[id] != text {
			return fmt.Errorf("id %d is used by both %q and %q", id, seen[id], text)
		}
		seen[id] = text
		return nil
	}
	for text, id := range vocab {
		if err := put(text, id); err != nil {
			return nil, err
		}
		if b, err := byteLevelDecode(text); err == nil {
			tokens[id] = b
		} else {
			tokens[id], literal[id] = []byte(text), true
		}
	}
	var specialIDs []int
	isSpecial := make([]bool, n)
	for text, id := range special {
		if err := put(text, id); err != nil {
			return nil, err
		}
		tokens[id] = []byte(text)
		isSpecial[id] = true
		specialIDs = append(specialIDs, id)
	}
	for id, tok := range tokens {
		if tok == nil {
			return nil, fmt.Errorf("no token has id %d; ids must be 0..%d with none missing", id, n-1)
		}
	}
	index := make(map[string]int, n)
	for id, tok := range tokens {
		if !isSpecial[id] && !literal[id] {
			index[string(tok)] = id
		}
	}
	pairs := make([][2]int, len(merges))
	produced := make([]bool, n)
	for r, m := range merges {
		var ids [2]int
		for k, s := range m {
			b, err := byteLevelDecode(s)
			if err != nil {
				return nil, fmt.Errorf("merge %d (%q %q): %w", r+1, m[0], m[1], err)
			}
			id, ok := index[string(b)]
			if !ok {
				return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary", r+1, m[0], m[1], s)
			}
			ids[k] = id
		}
		pairs[r] = ids
		if id, ok := index[string(tokens[ids[0]])+string(tokens[ids[1]])]; ok {
			produced[id] = true
		}
	}
	if special == nil {
		// GPT-2 pair: infer the special tokens (see LoadGPT2).
		for id, tok := range tokens {
			if literal[id] || (len(tok) > 1 && !produced[id]) {
				specialIDs = append(specialIDs, id)
			}
		}
	} else {
		for id := range tokens {
			if literal[id] && !isSpecial[id] {
				return nil, fmt.Errorf("vocabulary entry %q (id %d) is not a byte-level string", seen[id], id)
			}
		}
	}
	sort.Ints(specialIDs)
	return NewBPE(tokens, pairs, specialIDs)
}

// writeFileAtomic writes via a temporary file and rename, so a reader never
// sees half a file. The file ends up with mode 0644.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	merr := tmp.Chmod(0o644)
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// fileText is how token id appears in files: byte-level for ordinary tokens
// of a byte-level model, the piece itself for a SentencePiece-style one,
// literal for added tokens (as GPT-2's vocab.json stores "<|endoftext|>").
func (t *BPE) fileText(id int) string {
	if t.isAdded[id] {
		return string(t.tokens[id])
	}
	if t.chars {
		return string(t.syms[id]) // SentencePiece pieces are stored as they are
	}
	return byteLevelEncode(t.tokens[id])
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimRight(b.Bytes(), "\n")
}

// vocabJSON renders {"text": id, ...} in id order, special tokens included
// (as GPT-2's vocab.json and tokenizer.json both do).
func (t *BPE) vocabJSON() []byte {
	var b bytes.Buffer
	b.WriteString("{")
	first := true
	for id := range t.tokens {
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString("\n  ")
		b.Write(jsonString(t.fileText(id)))
		fmt.Fprintf(&b, ": %d", id)
	}
	b.WriteString("\n}\n")
	return b.Bytes()
}

func (t *BPE) mergesTxt() []byte {
	var b bytes.Buffer
	b.WriteString("#version: 0.2\n")
	for _, m := range t.mergeList {
		b.WriteString(t.fileText(int(m[0])))
		b.WriteByte(' ')
		b.WriteString(t.fileText(int(m[1])))
		b.WriteByte('\n')
	}
	return b.Bytes()
}
