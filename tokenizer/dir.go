package tokenizer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ConfigFile is Hugging Face's tokenizer_config.json; LoadDir reads its
// bos_token and eos_token, SaveDir writes it.
const ConfigFile = "tokenizer_config.json"

// ErrNoTokenizer is returned (wrapped) by LoadDir for a directory that holds
// no tokenizer files: a checkpoint of a model trained on Bytes, or one
// written before checkpoints carried their tokenizer.
var ErrNoTokenizer = errors.New("no tokenizer files")

// LoadDir loads the tokenizer a directory (a checkpoint, an export, a
// downloaded model) holds: tokenizer.json when present, else vocab.json +
// merges.txt, else an error wrapping ErrNoTokenizer. A tokenizer_config.json
// beside them sets BOS and EOS (its bos_token / eos_token; null means none).
func LoadDir(dir string) (*BPE, error) {
	hf := filepath.Join(dir, HFTokenizerFile)
	vocab := filepath.Join(dir, VocabFile)
	var t *BPE
	var err error
	switch {
	case fileExists(hf):
		t, err = LoadHF(hf)
	case fileExists(vocab):
		t, err = LoadGPT2(vocab, filepath.Join(dir, MergesFile))
	default:
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("load tokenizer: %w", serr)
		}
		return nil, fmt.Errorf("load tokenizer: %s has neither %s nor %s: %w", dir, HFTokenizerFile, VocabFile, ErrNoTokenizer)
	}
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, ConfigFile)
	if !fileExists(cfg) {
		return t, nil
	}
	raw, err := os.ReadFile(cfg)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	if err := t.applyConfig(raw); err != nil {
		return nil, fmt.Errorf("load tokenizer: %s: %w", cfg, err)
	}
	return t, nil
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}

// applyConfig takes bos_token and eos_token from a tokenizer_config.json: a
// string, an object with "content", or null (no such token). A key that is
// absent leaves the default.
func (t *BPE) applyConfig(raw []byte) error {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	for _, f := range []struct {
		key string
		id  *int
	}{{"bos_token", &t.bos}, {"eos_token", &t.eos}} {
		v, ok := cfg[f.key]
		if !ok {
			continue
		}
		if isNull(v) {
			*f.id = -1
			continue
		}
		var text string
		if json.Unmarshal(v, &text) != nil {
			var obj struct {
				Content string `json:"content"`
			}
			if err := json.Unmarshal(v, &obj); err != nil || obj.Content == "" {
				return fmt.Errorf("%s: want a string or an object with content, got %s", f.key, v)
			}
			text = obj.Content
		}
		id, ok := t.SpecialID(text)
		if !ok {
			i, inVocab := t.index[text]
			if !inVocab {
				return fmt.Errorf("%s %q is not a token", f.key, text)
			}
			id = int(i)
		}
		*f.id = id
	}
	t.rawConfig = append([]byte(nil), raw...)
	return nil
}

// SaveDir writes tok's files into dir (created if needed), mode 0644, each
// atomically: vocab.json, merges.txt, tokenizer.json and
// tokenizer_config.json (BOS and EOS). A tokenizer loaded from a
// tokenizer.json (and tokenizer_config.json) gets those files back byte for
// byte. Bytes has no files: SaveDir writes nothing for it, and LoadDir of
// such a directory reports ErrNoTokenizer.
func SaveDir(dir string, tok Tokenizer) error {
	switch t := tok.(type) {
	case Bytes:
		return nil
	case *BPE:
		return t.Save(dir)
	}
	return fmt.Errorf("save tokenizer: %T has no file format", tok)
}

// Save is SaveDir for a BPE.
func (t *BPE) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save tokenizer: %w", err)
	}
	hf := t.raw
	if hf == nil {
		hf = t.hfJSON()
	}
	cfg := t.rawConfig
	if cfg == nil {
		cfg = t.configJSON()
	}
	files := []struct {
		name string
		data []byte
	}{
		{VocabFile, t.vocabJSON()},
		{MergesFile, t.mergesTxt()},
		{HFTokenizerFile, hf},
		{ConfigFile, cfg},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("save tokenizer: %w", err)
		}
	}
	return nil
}

// configJSON is a minimal tokenizer_config.json naming BOS and EOS.
func (t *BPE) configJSON() []byte {
	name := func(id int) any {
		if id < 0 {
			return nil
		}
		return string(t.tokens[id])
	}
	b, _ := json.MarshalIndent(map[string]any{"bos_token": name(t.bos), "eos_token": name(t.eos)}, "", "  ")
	return append(b, '\n')
}

// Fingerprint identifies what a tokenizer does: two tokenizers with the same
// fingerprint encode and decode every text alike and agree on BOS and EOS,
// whatever files they were loaded from (GPT-2's pair or a tokenizer.json).
// Commands compare the checkpoint's tokenizer with a --tokenizer flag by it.
func Fingerprint(tok Tokenizer) string {
	switch t := tok.(type) {
	case Bytes:
		return KindBytes
	case *BPE:
		return t.fingerprint()
	}
	return fmt.Sprintf("unknown:%T", tok)
}

// Same reports whether a and b are the same tokenizer (equal fingerprints).
// Tokenizers of types this package does not know are never the same.
func Same(a, b Tokenizer) bool {
	fa := Fingerprint(a)
	return fa == Fingerprint(b) && (fa == KindBytes || len(fa) > 4 && fa[:4] == "bpe:")
}

func (t *BPE) fingerprint() string {
	h := sha256.New()
	var n [8]byte
	num := func(v int) {
		binary.LittleEndian.PutUint64(n[:], uint64(int64(v)))
		h.Write(n[:])
	}
	str := func(b []byte) {
		num(len(b))
		h.Write(b)
	}
	str([]byte(t.kind))
	str([]byte(t.desc))
	num(len(t.tokens))
	for id := range t.tokens {
		str(t.tokens[id])
		str(t.syms[id])
		flag := 0
		if t.isAdded[id] {
			flag = 1
		}
		if t.isSpecial[id] {
			flag = 2
		}
		num(flag)
	}
	num(len(t.mergeList))
	for _, m := range t.mergeList {
		num(int(m[0]))
		num(int(m[1]))
	}
	num(t.bos)
	num(t.eos)
	num(t.stripStart)
	num(t.stripEnd)
	num(int(t.stripChar))
	sum := h.Sum(nil)
	return "bpe:" + hex.EncodeToString(sum[:16])
}
