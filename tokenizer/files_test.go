package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/tokenizer/tokentest"
)

// sameTokenizer fails unless a and b have the same tokens, merges and
// special tokens.
func sameTokenizer(t *testing.T, a, b *BPE) {
	t.Helper()
	if a.VocabSize() != b.VocabSize() || a.NumMerges() != b.NumMerges() {
		t.Fatalf("sizes differ: vocab %d/%d merges %d/%d", a.VocabSize(), b.VocabSize(), a.NumMerges(), b.NumMerges())
	}
	for id := range a.tokens {
		if !bytes.Equal(a.tokens[id], b.tokens[id]) || a.isSpecial[id] != b.isSpecial[id] {
			t.Fatalf("token %d: %q (special %v) vs %q (special %v)", id, a.tokens[id], a.isSpecial[id], b.tokens[id], b.isSpecial[id])
		}
	}
	for r := range a.mergeList {
		if a.mergeList[r] != b.mergeList[r] {
			t.Fatalf("merge %d: %v vs %v", r, a.mergeList[r], b.mergeList[r])
		}
	}
}

// TestSaveLoadBothFormats: a tokenizer saved by strand loads back
// identically from the GPT-2 pair and from tokenizer.json.
func TestSaveLoadBothFormats(t *testing.T) {
	for name, tok := range map[string]*BPE{"gpt2": gpt2(t), "trained": trainSmall(t)} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tok.Save(dir); err != nil {
				t.Fatal(err)
			}
			pair, err := LoadGPT2(filepath.Join(dir, VocabFile), filepath.Join(dir, MergesFile))
			if err != nil {
				t.Fatalf("load pair: %v", err)
			}
			sameTokenizer(t, tok, pair)
			hf, err := LoadHF(filepath.Join(dir, HFTokenizerFile))
			if err != nil {
				t.Fatalf("load tokenizer.json: %v", err)
			}
			sameTokenizer(t, tok, hf)
			viaDir, err := Load(dir) // prefers tokenizer.json
			if err != nil {
				t.Fatal(err)
			}
			sameTokenizer(t, tok, viaDir)
			viaVocab, err := Load(filepath.Join(dir, VocabFile))
			if err != nil {
				t.Fatal(err)
			}
			sameTokenizer(t, tok, viaVocab)
			text := tokentest.Mixed(21, 5000)
			if !equalInts(tok.EncodeWithSpecial(text), hf.EncodeWithSpecial(text)) {
				t.Fatal("reloaded tokenizer encodes differently")
			}
		})
	}
}

// TestSavedGPT2FilesMatchPublished: saving GPT-2 writes a vocab.json and
// merges.txt with the same content as the published pair.
func TestSavedGPT2FilesMatchPublished(t *testing.T) {
	tok := gpt2(t)
	dir := t.TempDir()
	if err := tok.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{VocabFile, MergesFile} {
		pub, err := os.ReadFile(filepath.Join(gpt2Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		ours, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == VocabFile {
			var a, b map[string]int
			if err := json.Unmarshal(pub, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(ours, &b); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("%s content differs from the published file", f)
			}
		} else if !bytes.Equal(pub, ours) {
			t.Errorf("%s differs from the published file", f)
		}
	}
}

func TestLoadHFMergesAsPairs(t *testing.T) {
	tok := trainSmall(t)
	doc := tok.hfJSON()
	var f map[string]any
	if err := json.Unmarshal(doc, &f); err != nil {
		t.Fatal(err)
	}
	model := f["model"].(map[string]any)
	var pairs [][]string
	for _, m := range model["merges"].([]any) {
		pairs = append(pairs, strings.Split(m.(string), " "))
	}
	model["merges"] = pairs
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseHF(data)
	if err != nil {
		t.Fatal(err)
	}
	sameTokenizer(t, tok, got)
}

// TestLoadErrors: malformed files give errors that say what is wrong.
func TestLoadErrors(t *testing.T) {
	vocab := `{"` + byteLevelEncode([]byte("ab")) + `": 256, "<|endoftext|>": 257`
	for b := range 256 {
		s, _ := json.Marshal(byteLevelEncode([]byte{byte(b)}))
		vocab += fmt.Sprintf(", %s: %d", s, b)
	}
	vocab += "}"
	cases := []struct {
		name, vocab, merges, want string
	}{
		{"ok", vocab, "#version: 0.2\na b\n", ""},
		{"three fields", vocab, "#version: 0.2\na b c\n", "line 2"},
		{"one field", vocab, "ab\n", "line 1"},
		{"unknown token", vocab, "#version: 0.2\na q\nqq b\n", "not in the vocabulary"},
		{"result missing", vocab, "b a\n", `"ba" is not in the vocabulary`},
		{"not byte-level", vocab, "a \x01\n", "not a GPT-2 byte-level symbol"},
		{"duplicate merge", vocab, "a b\na b\n", "listed twice"},
		{"bad json", `{"a": `, "a b\n", "vocab.json"},
		{"id gap", strings.Replace(vocab, ": 257", ": 300", 1), "a b\n", "ids must be 0..257"},
		{"missing byte", strings.Replace(vocab, `"a": 97`, `"Ġa": 97`, 1), "", "no token for byte 0x61"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, VocabFile), []byte(c.vocab), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, MergesFile), []byte(c.merges), 0o644); err != nil {
				t.Fatal(err)
			}
			tok, err := Load(dir)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got := tok.Encode([]byte("abab")); !equalInts(got, []int{256, 256}) {
					t.Fatalf("Encode(abab) = %v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("missing path loaded")
	}
}

// TestLoadHFRejectsOtherTokenizers: a component this package does not
// implement gives one error naming its type and the supported ones.
func TestLoadHFRejectsOtherTokenizers(t *testing.T) {
	good := string(trainSmall(t).hfJSON())
	cases := []struct{ from, to, want string }{
		{`"type": "BPE"`, `"type": "WordPiece"`, `model type "WordPiece" is not supported (supported: BPE)`},
		{`"normalizer": null`, `"normalizer": {"type": "Lowercase"}`, `normalizer: type "Lowercase" is not supported (supported: ` + supportedNormalizers + `)`},
		{`"pre_tokenizer": {"type": "ByteLevel"`, `"pre_tokenizer": {"type": "Whitespace"`, `pre_tokenizer: type "Whitespace" is not supported (supported: ` + supportedPreTokenizers + `)`},
		{`"decoder": {"type": "ByteLevel"`, `"decoder": {"type": "WordPiece"`, `decoder: type "WordPiece" is not supported (supported: ` + supportedDecoders + `)`},
		{`"lstrip": false`, `"lstrip": true`, "lstrip"},
		{`"dropout": null`, `"dropout": 0.1`, "dropout"},
		{`"special": true`, `"special": false`, ""}, // a non-special added token is fine
	}
	for _, c := range cases {
		doc := strings.Replace(good, c.from, c.to, 1)
		if doc == good {
			t.Fatalf("fixture has no %q", c.from)
		}
		_, err := parseHF([]byte(doc))
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.to, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("tokenizer.json with %s: error %v, want %q", c.to, err, c.want)
		}
	}
}

// TestHFTokenizersLoadsOurFile runs the Hugging Face tokenizers library (the
// Rust implementation through its Node binding) on tokenizer.json files of
// every layout this package loads (GPT-2 and Train's files as we write them,
// the Llama 2 fixture and its Metaspace variant, cl100k in Llama 3's layout,
// Qwen2's and SmolLM's pipelines) and compares ids, with added tokens atomic
// (Hugging Face's default) and without, and the decoded text. It needs
// STRAND_HF_NODE_MODULES pointing at a node_modules with
// @anush008/tokenizers installed, and is skipped otherwise:
//
//	mkdir /tmp/hf && cd /tmp/hf && npm install @anush008/tokenizers@0.6.0
//	STRAND_HF_NODE_MODULES=/tmp/hf/node_modules go test ./tokenizer/ -run HFTokenizers
func TestHFTokenizersLoadsOurFile(t *testing.T) {
	mods := os.Getenv("STRAND_HF_NODE_MODULES")
	if mods == "" {
		t.Skip("STRAND_HF_NODE_MODULES not set")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	sp, err := LoadDir(spDir)
	if err != nil {
		t.Fatal(err)
	}
	mixed := string(tokentest.Mixed(23, 20000))
	gptText := mixed + "<|endoftext|>tail 12345 <|endoftext|>"
	spText := mixed + "<s>Hello</s> <s>  x</s>\n<unk>"
	cases := []struct {
		name string
		tok  *BPE
		text string
	}{
		{"gpt2", gpt2(t), gptText},
		{"trained", trainSmall(t), gptText},
		{"llama2-layout", sp, spText},
		{"metaspace-layout", spMetaspace(t), spText},
		{"llama3-layout", cl100k(t), gptText + "<|fim_prefix|>"},
		{"qwen2-layout", qwen2Like(t), gptText + "cafe\u0301 2026"},
		{"smollm-layout", smolLMLike(t), gptText},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := c.tok.Save(dir); err != nil {
				t.Fatal(err)
			}
			textPath := filepath.Join(dir, "text.txt")
			if err := os.WriteFile(textPath, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			script := `const {Tokenizer} = require("@anush008/tokenizers");
const fs = require("fs");
const tok = Tokenizer.fromFile(process.argv[1]);
const text = fs.readFileSync(process.argv[2], "utf8");
(async () => {
  const e = await tok.encode(text, null, {addSpecialTokens: false});
  const ids = e.getIds();
  const decoded = await tok.decode(ids, false);
  process.stdout.write(JSON.stringify({ids: ids, decoded: decoded}));
})();`
			cmd := exec.Command(node, "-e", script, filepath.Join(dir, HFTokenizerFile), textPath)
			cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node: %v: %s", err, stderr.Bytes())
			}
			var res struct {
				IDs     []int  `json:"ids"`
				Decoded string `json:"decoded"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("node output: %v", err)
			}
			got := c.tok.EncodeWithSpecial([]byte(c.text))
			if !equalInts(got, res.IDs) {
				t.Fatalf("HF tokenizers disagrees: %s", firstIntDiff(got, res.IDs))
			}
			text, err := c.tok.Decode(got)
			if err != nil || string(text) != res.Decoded {
				t.Fatalf("Decode = %q, HF %q (%v)", clip(string(text)), clip(res.Decoded), err)
			}
		})
	}
}
