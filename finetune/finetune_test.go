package finetune

import (
	"errors"
	"strings"
	"testing"

	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

const sample = `{"prompt": "ab=", "response": "ba"}

{"prompt": "x", "response": ""}
not json
{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
{"messages": [{"role": "robot", "content": "x"}]}
{"prompt": "a", "response": "b", "extra": 1}
`

func TestReadJSONLSkipCountsEveryLine(t *testing.T) {
	recs, rep, err := ReadJSONL(strings.NewReader(sample), SFT, Skip)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || rep.Records != 2 || rep.Skipped != 4 || rep.Blank != 1 || rep.Lines != 7 {
		t.Fatalf("records %d, report %+v", len(recs), rep)
	}
	if rep.Records+rep.Skipped+rep.Blank != rep.Lines {
		t.Fatalf("report does not account for every line: %+v", rep)
	}
	var lines []int
	for _, b := range rep.Bad {
		lines = append(lines, b.Line)
	}
	if want := []int{3, 4, 6, 7}; !equalInts(lines, want) {
		t.Fatalf("bad lines %v, want %v (%v)", lines, want, rep.Bad)
	}
	if recs[0].Line != 1 || recs[1].Line != 5 {
		t.Fatalf("record lines %d, %d", recs[0].Line, recs[1].Line)
	}
}

func TestReadJSONLFailNamesTheLine(t *testing.T) {
	_, _, err := ReadJSONL(strings.NewReader(sample), SFT, Fail)
	if err == nil || !errors.Is(err, ErrBadRecord) || !strings.HasPrefix(err.Error(), "line 3:") {
		t.Fatalf("err = %v, want a bad record at line 3", err)
	}
	if _, err := ParsePolicy("ignore"); err == nil {
		t.Fatal("policy ignore accepted")
	}
}

func TestReadPairs(t *testing.T) {
	in := `{"prompt": "q", "chosen": "good", "rejected": "bad"}
{"prompt": "q", "chosen": "good"}
{"prompt": "q", "response": "r"}`
	recs, rep, err := ReadJSONL(strings.NewReader(in), Pair, Skip)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || rep.Skipped != 2 {
		t.Fatalf("records %d, report %+v", len(recs), rep)
	}
}

func TestTemplateMasksPrompt(t *testing.T) {
	enc := NewEncoder(tokenizer.Bytes{})
	ex, err := enc.SFT(Record{Prompt: "ab=", Response: "ba"})
	if err != nil {
		t.Fatal(err)
	}
	if string(bytesOf(ex.Tokens)) != "ab=ba\x00" {
		t.Fatalf("tokens %q", bytesOf(ex.Tokens))
	}
	in, tg := make([]int32, ex.Len()), make([]int32, ex.Len())
	ex.Inputs(in, tg)
	// inputs a b = b a ; targets: predict b, a, EOS after "=", "b", "a"
	want := []int32{model.IgnoreIndex, model.IgnoreIndex, 'b', 'a', 0}
	if !equal32(tg, want) {
		t.Fatalf("targets %v, want %v", tg, want)
	}
	chat, err := enc.SFT(Record{Messages: []Message{{"user", "hi"}, {"assistant", "yo"}, {"user", "?"}, {"assistant", "!"}}})
	if err != nil {
		t.Fatal(err)
	}
	wantText := "<|user|>\nhi\n<|assistant|>\nyo\x00<|user|>\n?\n<|assistant|>\n!\x00"
	if got := string(bytesOf(chat.Tokens)); got != wantText {
		t.Fatalf("chat rendered %q, want %q", got, wantText)
	}
	var trained string
	for i, tok := range chat.Tokens {
		if chat.Train[i] {
			trained += string(rune(tok))
		}
	}
	if trained != "yo\x00!\x00" {
		t.Fatalf("trained tokens %q, want only the assistant turns and EOS", trained)
	}
}

func TestPack(t *testing.T) {
	enc := NewEncoder(tokenizer.Bytes{})
	var exs []Example
	for _, r := range []Record{{Prompt: "ab=", Response: "ba"}, {Prompt: "c=", Response: "c"}, {Prompt: "abcdefgh=", Response: "hgfedcba"}, {Prompt: "abcdefghijkl", Response: "x"}} {
		ex, _ := enc.SFT(r)
		exs = append(exs, ex)
	}
	// lengths (input positions) 5, 3, 17, 13
	p, err := Pack(exs, 10, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	// row 0: ex0 (5) + ex1 (3) + 2 padding; row 1: ex2 cut to 10;
	// ex3 cut to 10 positions loses its only trained target: dropped.
	if p.Rows != 2 || p.Examples != 3 || p.Truncated != 2 || p.Dropped != 1 || p.Padding != 2 {
		t.Fatalf("packed %+v", *p)
	}
	wantSeg := []int32{0, 0, 0, 0, 0, 1, 1, 1, 2, 2}
	if !equal32(p.Segments[:10], wantSeg) {
		t.Fatalf("segments %v, want %v", p.Segments[:10], wantSeg)
	}
	if p.Targets[8] != model.IgnoreIndex || p.Targets[9] != model.IgnoreIndex {
		t.Fatal("padding targets are not ignored")
	}
	u, err := Pack(exs, 10, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if u.Rows != 3 || u.Padding != 5+7 {
		t.Fatalf("unpacked %+v", *u)
	}
}

func TestBatchesSplitTheGlobalBatch(t *testing.T) {
	p := &Packed{Seq: 2, Rows: 5}
	for r := 0; r < 5; r++ {
		p.Inputs = append(p.Inputs, int32(r), int32(r))
		p.Targets = append(p.Targets, int32(r), int32(r))
		p.Segments = append(p.Segments, 0, 0)
	}
	whole, _ := NewBatches(p, BatchConfig{Batch: 4, Shuffle: true, Seed: 7})
	var ranks []*Batches
	for r := 0; r < 2; r++ {
		b, err := NewBatches(p, BatchConfig{Batch: 2, DPRank: r, DPSize: 2, Shuffle: true, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		ranks = append(ranks, b)
	}
	seen := map[int32]int{}
	for step := 0; step < 5; step++ {
		in, tg := make([]int32, 8), make([]int32, 8)
		if err := whole.Next(in, tg); err != nil {
			t.Fatal(err)
		}
		for r, b := range ranks {
			i2, t2 := make([]int32, 4), make([]int32, 4)
			if err := b.Next(i2, t2); err != nil {
				t.Fatal(err)
			}
			if !equal32(i2, in[r*4:(r+1)*4]) {
				t.Fatalf("step %d rank %d rows %v, global batch %v", step, r, i2, in)
			}
		}
		for i := 0; i < 8; i += 2 {
			seen[in[i]]++
		}
	}
	// 5 steps x 4 rows = 4 epochs of 5 rows: every row 4 times
	for r := int32(0); r < 5; r++ {
		if seen[r] != 4 {
			t.Fatalf("row %d seen %d times over 4 epochs: %v", r, seen[r], seen)
		}
	}
	if _, err := NewBatches(p, BatchConfig{Batch: 1, DPRank: 2, DPSize: 2}); err == nil {
		t.Fatal("rank 2 of 2 accepted")
	}
}

func bytesOf(x []int32) []byte {
	b := make([]byte, len(x))
	for i, v := range x {
		b[i] = byte(v)
	}
	return b
}

func equal32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
