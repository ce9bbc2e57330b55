package generate

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

func softmaxOf(xs ...float64) []float64 {
	var z float64
	for _, x := range xs {
		z += math.Exp(x)
	}
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = math.Exp(x) / z
	}
	return out
}

func near(t *testing.T, what string, got, want []float64) {
	t.Helper()
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("%s: got %v want %v", what, got, want)
		}
	}
}

// The expected distributions are worked out by hand from Hugging Face's
// TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper, applied
// in that order.
func TestFilterMatchesHuggingFace(t *testing.T) {
	logits := []float32{1, 2, 3, 4, 5}
	// top-k 3 keeps ids 2, 3, 4
	p := Probabilities(logits, Sampling{Temperature: 1, TopK: 3, TopP: 1})
	s := softmaxOf(3, 4, 5)
	near(t, "top-k 3", p, []float64{0, 0, s[0], s[1], s[2]})
	// top-p 0.8: probabilities 0.0117 0.0317 0.0861 0.2341 0.6364; the
	// ascending cumulative sums 0.0117 0.0434 0.1295 0.3636 1 are <= 0.2 for
	// ids 0-2, which go: {3, 4} is the smallest set reaching 0.8.
	p = Probabilities(logits, Sampling{Temperature: 1, TopP: 0.8})
	s = softmaxOf(4, 5)
	near(t, "top-p 0.8", p, []float64{0, 0, 0, s[0], s[1]})
	// top-p 0.871: {3, 4} sum to 0.8705 < 0.871, so id 2 stays too (its
	// ascending cumulative 0.1295 > 1 - 0.871).
	p = Probabilities(logits, Sampling{Temperature: 1, TopP: 0.871})
	s = softmaxOf(3, 4, 5)
	near(t, "top-p 0.871", p, []float64{0, 0, s[0], s[1], s[2]})
	// temperature 2 first (scores 0.5 .. 2.5), then top-k 2 keeps {3, 4}
	// with probabilities 0.3775, 0.6225, then top-p 0.6 removes id 3
	// (cumulative 0.3775 <= 0.4): one token left.
	p = Probabilities(logits, Sampling{Temperature: 2, TopK: 2, TopP: 0.6})
	near(t, "temperature 2, top-k 2, top-p 0.6", p, []float64{0, 0, 0, 0, 1})
	// temperature alone: softmax(logits / T)
	p = Probabilities(logits, Sampling{Temperature: 0.5, TopP: 1})
	near(t, "temperature 0.5", p, softmaxOf(2, 4, 6, 8, 10))
	// top-k keeps every token tied with the k-th
	p = Probabilities([]float32{1, 3, 3, 2}, Sampling{Temperature: 1, TopK: 1, TopP: 1})
	near(t, "top-k ties", p, []float64{0, 0.5, 0.5, 0})
	// a tiny top-p always keeps the most likely token
	p = Probabilities(logits, Sampling{Temperature: 1, TopP: 1e-9})
	near(t, "top-p tiny", p, []float64{0, 0, 0, 0, 1})
	// greedy
	p = Probabilities([]float32{0, 7, 7, 1}, Sampling{TopP: 1})
	near(t, "greedy", p, []float64{0, 1, 0, 0})
}

func TestSamplingValidation(t *testing.T) {
	for _, s := range []Sampling{
		{Temperature: 1, TopP: 0}, {Temperature: 1, TopP: 1.5}, {Temperature: 1, TopP: -0.1}, {Temperature: 1, TopP: math.NaN()},
		{Temperature: -1, TopP: 1}, {Temperature: math.Inf(1), TopP: 1}, {Temperature: 1, TopK: -1, TopP: 1},
	} {
		if _, err := NewSampler(s, 1); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if _, err := NewSampler(Sampling{Temperature: 0.7, TopK: 5, TopP: 1}, 1); err != nil {
		t.Fatal(err)
	}
}

func TestSamplerReproducibleAndDistributed(t *testing.T) {
	logits := []float32{0.5, 2, 1, -1, 1.5, 0}
	s := Sampling{Temperature: 0.9, TopK: 4, TopP: 0.95}
	draw := func(seed uint64, n int) []int {
		sm, err := NewSampler(s, seed)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int, n)
		for i := range out {
			out[i] = sm.Next(logits)
		}
		return out
	}
	a, b, c := draw(7, 200), draw(7, 200), draw(8, 200)
	same := true
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different tokens")
		}
		same = same && a[i] == c[i]
	}
	if same {
		t.Fatal("different seeds gave identical streams")
	}
	const n = 40000
	counts := make([]float64, len(logits))
	for _, id := range draw(9, n) {
		counts[id]++
	}
	want := Probabilities(logits, s)
	for i, p := range want {
		got := counts[i] / n
		if p == 0 && got != 0 {
			t.Fatalf("filtered token %d drawn %v times", i, counts[i])
		}
		if math.Abs(got-p) > 4*math.Sqrt(p*(1-p)/n)+1e-9 {
			t.Errorf("token %d: frequency %.4f, probability %.4f", i, got, p)
		}
	}
}

func TestStreamerHoldsPartialRunesAndStops(t *testing.T) {
	var chunks []string
	s := &streamer{stop: []string{"END"}, fn: func(_ int, b []byte) error { chunks = append(chunks, string(b)); return nil }}
	e := []byte("é") // 2 bytes
	for _, tok := range [][]byte{[]byte("a"), e[:1], e[1:], []byte("xE"), []byte("N"), []byte("q")} {
		if stop, _ := s.add(0, tok); stop {
			t.Fatal("stopped early")
		}
	}
	want := []string{"a", "", "é", "x", "", "ENq"}
	if strings.Join(chunks, "|") != strings.Join(want, "|") {
		t.Fatalf("chunks %q want %q", chunks, want)
	}
	chunks = nil
	s = &streamer{stop: []string{"END", "\n\n"}, fn: func(_ int, b []byte) error { chunks = append(chunks, string(b)); return nil }}
	s.add(0, []byte("hiE"))
	s.add(0, []byte("N"))
	if stop, _ := s.add(0, []byte("D and more")); !stop {
		t.Fatal("stop string not seen")
	}
	if string(s.text()) != "hi" || strings.Join(chunks, "") != "hi" {
		t.Fatalf("text %q chunks %q", s.text(), chunks)
	}
	// invalid UTF-8 is not held forever, and the end flushes everything
	chunks = nil
	s = &streamer{fn: func(_ int, b []byte) error { chunks = append(chunks, string(b)); return nil }}
	s.add(0, []byte{0xff})
	s.add(0, []byte{0xe4, 0xb8})
	s.flush()
	if strings.Join(chunks, "|") != "\xff||\xe4\xb8" {
		t.Fatalf("chunks %q", chunks)
	}
}

func testModel(t *testing.T, pos string, maxT int) *model.GPT {
	t.Helper()
	cfg := model.Config{VocabSize: 256, NLayer: 2, NHead: 4, NEmbd: 32, NPositions: 32, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: pos, InitStd: 0.3}
	m, err := model.New(cfg, 1, maxT, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(5)
	return m
}

func TestGenerateCachedEqualsRecompute(t *testing.T) {
	ctx := context.Background()
	for _, pos := range []string{model.PosLearned, model.PosRoPE, model.PosALiBi} {
		m := testModel(t, pos, 32)
		g := New(m, tokenizer.Bytes{})
		for _, s := range []Sampling{{TopP: 1}, {Temperature: 1, TopK: 20, TopP: 0.9}} {
			opts := Options{MaxTokens: 20, Sampling: s, Seed: 3}
			var streamed bytes.Buffer
			a, err := g.Stream(ctx, "func (", opts, func(_ int, b []byte) error { streamed.Write(b); return nil })
			if err != nil {
				t.Fatal(err)
			}
			opts.Recompute = true
			b, err := g.Generate(ctx, "func (", opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Tokens) != 20 || a.Reason != "max_tokens" || a.PromptTokens != 6 {
				t.Fatalf("%s: %d tokens, reason %s, prompt %d", pos, len(a.Tokens), a.Reason, a.PromptTokens)
			}
			for i := range a.Tokens {
				if a.Tokens[i] != b.Tokens[i] {
					t.Fatalf("%s %+v: cached %v, recomputed %v", pos, s, a.Tokens, b.Tokens)
				}
			}
			if !bytes.Equal(streamed.Bytes(), a.Text) {
				t.Fatalf("streamed %q, result %q", streamed.Bytes(), a.Text)
			}
			c, _ := g.Generate(ctx, "func (", Options{MaxTokens: 20, Sampling: s, Seed: 3})
			if !bytes.Equal(c.Text, a.Text) {
				t.Fatal("same seed, different text")
			}
		}
	}
}

func TestGenerateLimitsAndErrors(t *testing.T) {
	ctx := context.Background()
	m := testModel(t, model.PosLearned, 1)
	g := New(m, tokenizer.Bytes{})
	ok := Options{MaxTokens: 5, Sampling: Sampling{TopP: 1}}
	if _, err := g.Generate(ctx, "", ok); err == nil || !strings.Contains(err.Error(), "empty prompt") {
		t.Fatalf("empty prompt: %v", err)
	}
	if _, err := g.Generate(ctx, strings.Repeat("x", 32), ok); err == nil || !strings.Contains(err.Error(), "context") {
		t.Fatalf("prompt as long as the context: %v", err)
	}
	bad := ok
	bad.TopP = 1.5
	if _, err := g.Generate(ctx, "x", bad); err == nil || !strings.Contains(err.Error(), "top-p") {
		t.Fatalf("top-p 1.5: %v", err)
	}
	bad = ok
	bad.MaxTokens = 0
	if _, err := g.Generate(ctx, "x", bad); err == nil {
		t.Fatal("max tokens 0 accepted")
	}
	bad = ok
	bad.Context = 64
	if _, err := g.Generate(ctx, "x", bad); err == nil || !strings.Contains(err.Error(), "learned") {
		t.Fatalf("learned model with a 64-token context: %v", err)
	}
	// a prompt of 30 tokens in a 32-position context: 2 tokens appended,
	// plus the last one sampled from the full context
	r, err := g.Generate(ctx, strings.Repeat("y", 30), Options{MaxTokens: 10, Sampling: Sampling{TopP: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Reason != "context" || len(r.Tokens) != 3 {
		t.Fatalf("reason %s after %d tokens", r.Reason, len(r.Tokens))
	}
	// a stop string ends generation and is cut from the text
	r, _ = g.Generate(ctx, "ab", Options{MaxTokens: 10, Sampling: Sampling{TopP: 1}})
	stop := string(r.Text[2:4])
	r2, err := g.Generate(ctx, "ab", Options{MaxTokens: 10, Sampling: Sampling{TopP: 1}, Stop: []string{stop}})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Reason != "stop" || strings.Contains(string(r2.Text), stop) || !strings.HasPrefix(string(r.Text), string(r2.Text)) {
		t.Fatalf("stop %q: reason %s text %q (unstopped %q)", stop, r2.Reason, r2.Text, r.Text)
	}
	// the callback's error stops generation
	calls := 0
	_, err = g.Stream(ctx, "ab", ok, func(int, []byte) error { calls++; return context.Canceled })
	if err != context.Canceled || calls != 1 {
		t.Fatalf("callback error: %v after %d calls", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.Generate(cctx, "ab", ok); err == nil {
		t.Fatal("cancelled context ignored")
	}
}

func TestTokensIterator(t *testing.T) {
	ctx := context.Background()
	g := New(testModel(t, model.PosALiBi, 1), tokenizer.Bytes{})
	opts := Options{MaxTokens: 12, Sampling: Sampling{Temperature: 0.9, TopP: 1}, Seed: 2}
	want, err := g.Generate(ctx, "if ", opts)
	if err != nil {
		t.Fatal(err)
	}
	var text []byte
	var ids []int
	for tok, err := range g.Tokens(ctx, "if ", opts) {
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, tok.Text...)
		if tok.ID != NoToken {
			ids = append(ids, tok.ID)
		}
	}
	if !bytes.Equal(text, want.Text) || len(ids) != len(want.Tokens) {
		t.Fatalf("iterator text %q (%d ids), Generate %q (%d)", text, len(ids), want.Text, len(want.Tokens))
	}
	n := 0
	for range g.Tokens(ctx, "if ", opts) {
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("break after 3 tokens: %d", n)
	}
	var gotErr error
	for _, err := range g.Tokens(ctx, "", opts) {
		gotErr = err
	}
	if gotErr == nil || !strings.Contains(gotErr.Error(), "empty prompt") {
		t.Fatalf("empty prompt through the iterator: %v", gotErr)
	}
}
