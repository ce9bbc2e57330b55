package metrics

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

type stepRecord struct {
	Step       int     `json:"step"`
	Loss       float64 `json:"loss"`
	LR         float64 `json:"lr"`
	GradNorm   float64 `json:"grad_norm"`
	TokensPerS float64 `json:"tokens_per_s"`
}

func TestWriteRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "metrics.jsonl")
	j, err := NewJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := j.Write(stepRecord{Step: i, Loss: 10 / float64(i), LR: 6e-4, GradNorm: 1, TokensPerS: 1000}); err != nil {
			t.Fatal(err)
		}
		// Flushed per write: the line is on disk before Close.
		b, _ := os.ReadFile(p)
		if got := strings.Count(string(b), "\n"); got != i {
			t.Fatalf("after %d writes the file has %d lines", i, got)
		}
	}
	if err := j.Write(map[string]any{"step": 3, "val_loss": 2.5}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := j.Write(stepRecord{}); err == nil {
		t.Fatal("write after close accepted")
	}
	recs, err := ReadJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[1]["loss"] != 5.0 || recs[2]["tokens_per_s"] != 1000.0 {
		t.Fatalf("records %v", recs)
	}
	x, y := Series(recs, "step", "loss")
	if !slices.Equal(x, []float64{1, 2, 3}) || y[0] != 10 {
		t.Fatalf("series %v %v", x, y)
	}
	x, y = Series(recs, "step", "val_loss")
	if !slices.Equal(x, []float64{3}) || !slices.Equal(y, []float64{2.5}) {
		t.Fatalf("val series %v %v", x, y)
	}
}

func TestWriteRejectsBadRecords(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.jsonl")
	j, err := NewJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, r := range []any{math.NaN(), 3, "x", make(chan int), map[string]any{"c": make(chan int)}} {
		if err := j.Write(r); err == nil {
			t.Errorf("%T accepted", r)
		}
	}
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Fatalf("bad records wrote %q", b)
	}
}

func TestReadTornAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	torn := filepath.Join(dir, "torn.jsonl")
	os.WriteFile(torn, []byte("{\"step\":1}\n{\"step\":2}\n{\"st"), 0o644)
	recs, err := ReadJSONL(torn)
	if err != nil || len(recs) != 2 {
		t.Fatalf("torn: %v %v", recs, err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"step\":1}\nnot json\n{\"step\":3}\n"), 0o644)
	if _, err := ReadJSONL(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("corrupt: %v", err)
	}
	if _, err := ReadJSONL(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestAppendAndConcurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.jsonl")
	j, _ := NewJSONL(p)
	j.Write(map[string]int{"step": 0})
	j.Close()
	j, err := AppendJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := j.Write(map[string]int{"g": g, "i": i, "pad": 1 << 20}); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	j.Close()
	recs, err := ReadJSONL(p)
	if err != nil || len(recs) != 201 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
}

type inner struct {
	MFU float64 `json:"mfu"`
}

type divergedRecord struct {
	Step   int       `json:"step"`
	Loss   float64   `json:"loss"`
	Norm   float32   `json:"grad_norm,omitempty"`
	Hidden string    `json:"-"`
	Losses []float64 `json:"micro_losses"`
	Note   *string   `json:"note"`
	Blob   []byte    `json:"blob"`
	inner
	secret int
}

func TestNonFiniteWrittenAsNull(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.jsonl")
	j, err := NewJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	note := "diverged"
	recs := []any{
		divergedRecord{Step: 7, Loss: math.NaN(), Hidden: "x", Losses: []float64{1, math.Inf(-1)}, Note: &note,
			Blob: []byte{1}, inner: inner{MFU: math.Inf(1)}, secret: 3},
		map[string]float64{"step": 8, "loss": math.Inf(1)},
		&divergedRecord{Step: 9, Loss: 1, Norm: float32(math.NaN())},
	}
	for _, r := range recs {
		if err := j.Write(r); err != nil {
			t.Fatalf("%T: %v", r, err)
		}
	}
	j.Close()
	b, _ := os.ReadFile(p)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{
		`{"blob":"AQ==","loss":null,"mfu":null,"micro_losses":[1,null],"note":"diverged","step":7}`,
		`{"loss":null,"step":8}`,
		`{"blob":null,"grad_norm":null,"loss":1,"mfu":0,"micro_losses":null,"note":null,"step":9}`,
	}
	if len(lines) != len(want) {
		t.Fatalf("lines %q", lines)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d\n got %s\nwant %s", i, lines[i], want[i])
		}
	}
	got, err := ReadJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := Series(got, "step", "loss")
	if !slices.Equal(x, []float64{9}) {
		t.Fatalf("null losses should drop out of the series: %v", x)
	}
}
