package finetune

import (
	"fmt"
	"slices"
	"strings"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/hf"
)

// Example is one encoded record: its tokens and, per token, whether the
// model is trained to predict it (response and EOS tokens).
type Example struct {
	Line   int // source line, for messages
	Tokens []int32
	Train  []bool
}

// Len is the number of input positions the example needs (len(Tokens)-1:
// the last token is only a target).
func (e Example) Len() int { return len(e.Tokens) - 1 }

// EOS is the end-of-sequence id for tok: the one its files declare
// (tokenizer_config.json's eos_token: Llama's </s>, Qwen's <|im_end|>), else
// its <|endoftext|> special token, else 0 (NUL: the byte tokenizer).
func EOS(tok data.Tokenizer) int32 {
	if e, ok := tok.(interface{ EOS() (int, bool) }); ok {
		if id, ok := e.EOS(); ok {
			return int32(id)
		}
	}
	if s, ok := tok.(interface{ SpecialID(string) (int, bool) }); ok {
		if id, ok := s.SpecialID(data.EndOfText); ok {
			return int32(id)
		}
	}
	return 0
}

// Encoder renders records with the template (see the package doc) and
// tokenizes them.
type Encoder struct {
	Tok data.Tokenizer
	EOS int32
	// Template names the chat format of SFT records: "" for strand's own
	// (<|role|> lines, EOS after each assistant turn), or one of
	// hf.ChatTemplates() (chatml as Qwen2 renders it, llama3's headers),
	// whose special markers are encoded as the tokenizer's added tokens and
	// whose end-of-turn marker closes each trained reply.
	Template string
}

// NewEncoder uses tok's end-of-sequence token.
func NewEncoder(tok data.Tokenizer) Encoder { return Encoder{Tok: tok, EOS: EOS(tok)} }

func (e Encoder) appendText(ex *Example, text string, train bool) {
	for _, id := range e.Tok.Encode([]byte(text)) {
		ex.Tokens = append(ex.Tokens, int32(id))
		ex.Train = append(ex.Train, train)
	}
}

func (e Encoder) appendEOS(ex *Example) {
	ex.Tokens = append(ex.Tokens, e.EOS)
	ex.Train = append(ex.Train, true)
}

// SFT encodes an SFT record (prompt/response or messages).
func (e Encoder) SFT(r Record) (Example, error) {
	if e.Template != "" {
		return e.chat(r)
	}
	ex := Example{Line: r.Line}
	if r.Messages != nil {
		for _, m := range r.Messages {
			e.appendText(&ex, "<|"+m.Role+"|>\n", false)
			if m.Role == "assistant" {
				e.appendText(&ex, m.Content, true)
				e.appendEOS(&ex)
				continue
			}
			e.appendText(&ex, m.Content+"\n", false)
		}
	} else {
		e.appendText(&ex, r.Prompt, false)
		e.appendText(&ex, r.Response, true)
		e.appendEOS(&ex)
	}
	if len(ex.Tokens) < 2 {
		return ex, fmt.Errorf("line %d: fewer than 2 tokens", r.Line)
	}
	return ex, nil
}

// Completion encodes prompt + completion + EOS with only the completion and
// EOS trained: one side of a preference pair.
func (e Encoder) Completion(line int, prompt, completion string) Example {
	ex := Example{Line: line}
	e.appendText(&ex, prompt, false)
	e.appendText(&ex, completion, true)
	e.appendEOS(&ex)
	return ex
}

// Inputs writes the example's model inputs and targets (the first
// min(len(in), Len()) positions): targets[i] is Tokens[i+1] when it is
// trained, else model.IgnoreIndex.
func (ex Example) Inputs(in, tg []int32) {
	n := min(ex.Len(), len(in), len(tg))
	copy(in, ex.Tokens[:n])
	for i := 0; i < n; i++ {
		tg[i] = ignoreIndex
		if ex.Train[i+1] {
			tg[i] = ex.Tokens[i+1]
		}
	}
}

// chat encodes an SFT record with a named chat template: its messages, or
// its prompt (Alpaca's instruction and input) as the user turn and its
// response as the assistant's.
func (e Encoder) chat(r Record) (Example, error) {
	var msgs []hf.ChatMessage
	switch {
	case r.Messages != nil:
		for _, m := range r.Messages {
			msgs = append(msgs, hf.ChatMessage{Role: m.Role, Content: m.Content})
		}
	case r.Instruction != "":
		user := r.Instruction
		if r.Input != "" {
			user += "\n\n" + r.Input
		}
		msgs = []hf.ChatMessage{{Role: "user", Content: user}, {Role: "assistant", Content: r.Response}}
	default:
		msgs = []hf.ChatMessage{{Role: "user", Content: r.Prompt}, {Role: "assistant", Content: r.Response}}
	}
	segs, err := hf.RenderChat(e.Template, msgs, false)
	if err != nil {
		return Example{}, fmt.Errorf("line %d: %w", r.Line, err)
	}
	ex := Example{Line: r.Line}
	for _, s := range segs {
		for _, id := range e.encodeSpecial(s.Text) {
			ex.Tokens = append(ex.Tokens, int32(id))
			ex.Train = append(ex.Train, s.Train)
		}
	}
	if len(ex.Tokens) < 2 {
		return ex, fmt.Errorf("line %d: fewer than 2 tokens", r.Line)
	}
	return ex, nil
}

// encodeSpecial encodes text with the tokenizer's added tokens matched
// whole (a template's <|im_start|> is one id), when it has any.
func (e Encoder) encodeSpecial(text string) []int {
	if s, ok := e.Tok.(interface{ EncodeWithSpecial([]byte) []int }); ok {
		return s.EncodeWithSpecial([]byte(text))
	}
	return e.Tok.Encode([]byte(text))
}

// CheckTemplate reports whether name is "" (strand's format) or a known
// chat template.
func CheckTemplate(name string) error {
	if name == "" || slices.Contains(hf.ChatTemplates(), name) {
		return nil
	}
	return fmt.Errorf("chat template %q is not one of %s (or empty for strand's own)", name, strings.Join(hf.ChatTemplates(), ", "))
}
