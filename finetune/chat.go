package finetune

import "strings"

// ChatPrompt renders a conversation's context turns with the chat template
// SFT trains on (see the package doc) and opens the assistant's turn:
//
//	<|system|>\n{system}\n   (only when system is not empty)
//	<|user|>\n{user}\n
//	<|assistant|>\n
//
// A model fine-tuned on {"messages": ...} records continues it with the
// assistant's reply and ends it with EOS (EOS(tok)), where generation
// should stop.
func ChatPrompt(system, user string) string {
	var b strings.Builder
	if system != "" {
		b.WriteString("<|system|>\n" + system + "\n")
	}
	b.WriteString("<|user|>\n" + user + "\n")
	b.WriteString("<|assistant|>\n")
	return b.String()
}
