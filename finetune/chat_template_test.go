package finetune

import (
	"strings"
	"testing"

	"github.com/strand-ml/strand/tokenizer"
)

// TestAlpacaRecords: Alpaca's instruction/input/output records parse into
// its prompt format and train only on the output (and EOS); half-filled or
// mixed records are refused.
func TestAlpacaRecords(t *testing.T) {
	recs, _, err := ReadJSONL(strings.NewReader(`{"instruction": "Add.", "input": "2+2", "output": "4"}`+"\n"+
		`{"instruction": "Greet.", "output": "hi"}`+"\n"), SFT, Fail)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(recs[0].Prompt, "### Instruction:\nAdd.\n\n### Input:\n2+2\n\n### Response:\n") || recs[0].Response != "4" {
		t.Fatalf("record 1 parsed as %+v", recs[0])
	}
	if strings.Contains(recs[1].Prompt, "### Input:") {
		t.Fatalf("record 2 without input has an input section: %q", recs[1].Prompt)
	}
	ex, err := NewEncoder(tokenizer.Bytes{}).SFT(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	var trained []byte
	for i, id := range ex.Tokens {
		if ex.Train[i] && id != 0 {
			trained = append(trained, byte(id))
		}
	}
	if string(trained) != "4" {
		t.Fatalf("trained on %q, want the output only", trained)
	}
	for _, bad := range []string{`{"instruction": "x"}`, `{"output": "y"}`, `{"instruction": "x", "output": "y", "prompt": "p"}`} {
		if _, _, err := ReadJSONL(strings.NewReader(bad+"\n"), SFT, Fail); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestChatTemplates: under chatml and llama3 a record renders as the
// template's turns, the assistant's content and end-of-turn marker are
// the only trained tokens, and an unknown template is refused.
func TestChatTemplates(t *testing.T) {
	rec := Record{Line: 1, Messages: []Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "yo"}}}
	for _, c := range []struct{ template, text, trained string }{
		{"chatml", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n", "yo<|im_end|>"},
		{"llama3", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>", "yo<|eot_id|>"},
	} {
		enc := NewEncoder(tokenizer.Bytes{})
		enc.Template = c.template
		ex, err := enc.SFT(rec)
		if err != nil {
			t.Fatal(err)
		}
		var all, trained []byte
		for i, id := range ex.Tokens {
			all = append(all, byte(id))
			if ex.Train[i] {
				trained = append(trained, byte(id))
			}
		}
		if string(all) != c.text || string(trained) != c.trained {
			t.Errorf("%s: rendered %q, trained %q; want %q and %q", c.template, all, trained, c.text, c.trained)
		}
	}
	if err := CheckTemplate("vicuna"); err == nil || !strings.Contains(err.Error(), "chatml") {
		t.Errorf("unknown template: %v", err)
	}
}
