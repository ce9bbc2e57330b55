package hf

import (
	"strings"
	"testing"
)

func joined(segs []Segment) (all, trained string) {
	for _, s := range segs {
		all += s.Text
		if s.Train {
			trained += s.Text
		}
	}
	return all, trained
}

// The expected strings are the models' Jinja chat templates worked by hand
// (Qwen2-Instruct's tokenizer_config.json, Meta-Llama-3-8B-Instruct's).
func TestRenderChat(t *testing.T) {
	msgs := []ChatMessage{{"user", "Hi there"}, {"assistant", " Hello! "}, {"user", "2+2?"}}
	segs, err := RenderChat("chatml", msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	all, trained := joined(segs)
	want := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n" +
		"<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
	if all != want || trained != " Hello! <|im_end|>" {
		t.Errorf("chatml:\n%q\ntrained %q", all, trained)
	}
	segs, err = RenderChat("llama3", append([]ChatMessage{{"system", "Be brief."}}, msgs...), false)
	if err != nil {
		t.Fatal(err)
	}
	all, trained = joined(segs)
	want = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
	if all != want || trained != "Hello!<|eot_id|>" {
		t.Errorf("llama3:\n%q\ntrained %q", all, trained)
	}
	if _, err := RenderChat("vicuna", msgs, false); err == nil || !strings.Contains(err.Error(), "chatml, llama3") {
		t.Errorf("unknown template: %v", err)
	}
	if _, err := RenderChat("chatml", []ChatMessage{{"tool", "x"}}, false); err == nil || !strings.Contains(err.Error(), `role "tool"`) {
		t.Errorf("unknown role: %v", err)
	}
}

func TestAlpacaPrompt(t *testing.T) {
	if got := AlpacaPrompt("Add.", "2 and 3"); got != "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n" {
		t.Errorf("with input: %q", got)
	}
	if got := AlpacaPrompt("Say hi.", ""); got != "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n" {
		t.Errorf("without input: %q", got)
	}
}
