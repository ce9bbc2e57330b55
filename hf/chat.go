package hf

import (
	"fmt"
	"strings"
)

// Chat and instruction formats of the Llama family, as pure functions
// that a fine-tuning encoder tokenizes (special tokens such as
// <|im_start|> are written as text: the tokenizer maps them to their ids).

// ChatMessage is one turn: role system, user or assistant.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Segment is a run of rendered text and whether supervised fine-tuning
// trains on it (an assistant turn's content and its end marker).
type Segment struct {
	Text  string
	Train bool
}

// ChatTemplates lists the named templates RenderChat knows.
func ChatTemplates() []string { return []string{"chatml", "llama3"} }

// RenderChat renders msgs with a named template, as the models'
// tokenizer_config.json chat_template does:
//
//   - chatml (Qwen2): "<|im_start|>ROLE\nCONTENT<|im_end|>\n" per turn, with
//     Qwen's default system turn "You are a helpful assistant." when the
//     first turn is not a system one;
//   - llama3 (Llama 3 Instruct): "<|begin_of_text|>" then
//     "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>" per
//     turn, the content trimmed of surrounding white space.
//
// With generation, the assistant header that starts a reply is appended
// (add_generation_prompt). Assistant contents and their end markers are
// the trained segments.
func RenderChat(template string, msgs []ChatMessage, generation bool) ([]Segment, error) {
	if len(msgs) == 0 {
		return nil, fmt.Errorf("chat template %s: no messages", template)
	}
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return nil, fmt.Errorf("chat template %s: message %d has role %q (want system, user or assistant)", template, i, m.Role)
		}
	}
	var out []Segment
	add := func(text string, train bool) {
		if n := len(out); n > 0 && out[n-1].Train == train {
			out[n-1].Text += text
			return
		}
		out = append(out, Segment{Text: text, Train: train})
	}
	switch template {
	case "chatml":
		if msgs[0].Role != "system" {
			add("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", false)
		}
		for _, m := range msgs {
			add("<|im_start|>"+m.Role+"\n", false)
			if m.Role == "assistant" {
				add(m.Content+"<|im_end|>", true)
				add("\n", false)
				continue
			}
			add(m.Content+"<|im_end|>\n", false)
		}
		if generation {
			add("<|im_start|>assistant\n", false)
		}
	case "llama3":
		add("<|begin_of_text|>", false)
		for _, m := range msgs {
			add("<|start_header_id|>"+m.Role+"<|end_header_id|>\n\n", false)
			c := strings.TrimSpace(m.Content)
			if m.Role == "assistant" {
				add(c+"<|eot_id|>", true)
				continue
			}
			add(c+"<|eot_id|>", false)
		}
		if generation {
			add("<|start_header_id|>assistant<|end_header_id|>\n\n", false)
		}
	default:
		return nil, fmt.Errorf("chat template %q is not one of %s", template, strings.Join(ChatTemplates(), ", "))
	}
	return out, nil
}

// AlpacaPrompt is Stanford Alpaca's prompt for an {"instruction", "input",
// "output"} record (the output is the response that follows it); input
// may be empty.
func AlpacaPrompt(instruction, input string) string {
	if input == "" {
		return "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
			"### Instruction:\n" + instruction + "\n\n### Response:\n"
	}
	return "Below is an instruction that describes a task, paired with an input that provides further context. " +
		"Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\n" + instruction + "\n\n### Input:\n" + input + "\n\n### Response:\n"
}
