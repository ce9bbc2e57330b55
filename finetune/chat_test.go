package finetune

import (
	"testing"

	"github.com/strand-ml/strand/tokenizer"
)

// TestChatPromptIsTheTrainedContext: ChatPrompt renders exactly the
// untrained context SFT puts before an assistant reply.
func TestChatPromptIsTheTrainedContext(t *testing.T) {
	enc := NewEncoder(tokenizer.Bytes{})
	for _, system := range []string{"", "be brief"} {
		var msgs []Message
		if system != "" {
			msgs = append(msgs, Message{Role: "system", Content: system})
		}
		msgs = append(msgs, Message{Role: "user", Content: "reverse abc"}, Message{Role: "assistant", Content: "cba"})
		ex, err := enc.SFT(Record{Line: 1, Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		var context []byte
		for i, tok := range ex.Tokens {
			if ex.Train[i] {
				break
			}
			context = append(context, byte(tok))
		}
		if got := ChatPrompt(system, "reverse abc"); got != string(context) {
			t.Errorf("system %q: ChatPrompt %q, SFT context %q", system, got, context)
		}
	}
}
