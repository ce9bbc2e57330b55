package finetune

import (
	"fmt"

	"github.com/strand-ml/strand/data"
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

// EOS is the end-of-sequence id for tok: its <|endoftext|> special token,
// or 0 (NUL) for a tokenizer without one (the byte tokenizer).
func EOS(tok data.Tokenizer) int32 {
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
