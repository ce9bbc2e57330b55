package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/generate"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

// chatExample is one record of the chat task: a system turn, a user turn
// holding 5 letters and the assistant's answer, the letters reversed.
type chatExample struct {
	system, user, answer string
}

func (c chatExample) messages(answer string) []finetune.Message {
	return []finetune.Message{{Role: "system", Content: c.system}, {Role: "user", Content: c.user}, {Role: "assistant", Content: answer}}
}

// writeChatTask writes n {"messages": [system, user, assistant]} records
// of the chat task, no user turn twice (so held-out records are unseen),
// and returns them in file order. A record renders to 54 tokens with the
// byte tokenizer: one per row of tiny's 64 positions.
func writeChatTask(t *testing.T, path string, n int) []chatExample {
	t.Helper()
	r := rand.New(rand.NewPCG(11, 12))
	var b strings.Builder
	var out []chatExample
	seen := map[string]bool{}
	for len(out) < n {
		s, rev := reverseWord(r, 5)
		if seen[string(s)] {
			continue
		}
		seen[string(s)] = true
		ex := chatExample{system: "reverse", user: string(s), answer: string(rev)}
		line, _ := json.Marshal(map[string]any{"messages": ex.messages(ex.answer)})
		b.Write(line)
		b.WriteByte('\n')
		out = append(out, ex)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSFTChatLearnsTask: SFT of a fresh tiny model on chat records
// (system + user + assistant) makes greedy generation from the rendered
// prompt (the chat template up to "<|assistant|>\n") answer > 90% of the
// held-out examples exactly, stopping at EOS.
func TestSFTChatLearnsTask(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "chat.jsonl")
	const n, held, steps = 2000, 100, 250
	exs := writeChatTask(t, data, n)
	run := filepath.Join(dir, "sft")
	out := runStrand(t, 3*time.Minute, "sft", "--from-scratch", "--model", "tiny", "--data", data, "--steps", fmt.Sprint(steps), "--batch", "16",
		"--lr", "2e-3", "--warmup", "30", "--val-frac", "0.05", "--out", run, "--threads", "2")
	losses, exact := sftMetrics(t, run)
	if len(losses) != steps {
		t.Fatalf("%d losses, want %d\n%s", len(losses), steps, out)
	}
	t.Logf("loss %.4f -> %.4f, teacher-forced held-out exact match %.3f", losses[0], losses[len(losses)-1], exact)

	// Generate from the checkpoint with the library, as a serving loop would.
	ckpt, _, err := checkpoint.Resolve(run)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := checkpoint.ReadConfig(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, 1, 1, gemm.New(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.LoadModel(ckpt, m); err != nil {
		t.Fatal(err)
	}
	tok := tokenizer.Bytes{}
	enc := finetune.NewEncoder(tok)
	g := generate.New(m, tok)
	g.EOS = int(enc.EOS) // the byte tokenizer's EOS is NUL (see finetune's template)
	hits, misses := 0, 0
	for _, ex := range exs[n-held:] { // the tail strand sft held out (--val-frac 0.05)
		// The rendered prompt is the template's encoding of the record with
		// an empty answer, without the answer's closing EOS.
		rec, err := enc.SFT(finetune.Record{Messages: ex.messages("")})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := tok.Decode(toInts(rec.Tokens[:len(rec.Tokens)-1]))
		if err != nil {
			t.Fatal(err)
		}
		prompt := string(raw)
		if prompt != "<|system|>\n"+ex.system+"\n<|user|>\n"+ex.user+"\n<|assistant|>\n" {
			t.Fatalf("rendered prompt %q", prompt)
		}
		res, err := g.Generate(context.Background(), prompt, generate.Options{MaxTokens: 8})
		if err != nil {
			t.Fatal(err)
		}
		if res.Reason == "eos" && string(res.Text) == ex.answer {
			hits++
		} else if misses++; misses <= 3 {
			t.Logf("%q: generated %q (%s), want %q", ex.user, res.Text, res.Reason, ex.answer)
		}
	}
	acc := float64(hits) / held
	t.Logf("generation exact match %.3f on %d held-out chats", acc, held)
	if !(acc > 0.9) {
		t.Fatalf("generation exact match %.3f on held-out chats, want > 0.9\n%s", acc, out)
	}
}

func toInts(ids []int32) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}
