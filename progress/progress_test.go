package progress

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeClock advances only when told to.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func TestTerminalRendering(t *testing.T) {
	clk := newClock()
	var buf bytes.Buffer
	b := New(&buf, 100, Options{Desc: "train", Width: 10, Mode: Terminal, Now: clk.now})
	clk.add(2 * time.Second)
	b.Update(10, Stats{Loss: 3.14159, TokensPerSec: 12345.6, MFU: 0.231})
	want := "\rtrain  10/100 [#---------]  10% loss 3.1416 | 12,346 tok/s | MFU 23.1% | 00:02<00:18\x1b[K"
	if got := buf.String(); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}

	// Within the redraw interval nothing is drawn.
	buf.Reset()
	clk.add(50 * time.Millisecond)
	b.Update(11, Stats{Loss: 3})
	if buf.Len() != 0 {
		t.Fatalf("redrew too early: %q", buf.String())
	}
	// After it, a redraw in place.
	clk.add(100 * time.Millisecond)
	b.Update(12, Stats{Loss: 3, LR: 6e-4, GradNorm: 1.5})
	if got := buf.String(); !strings.HasPrefix(got, "\rtrain  12/100 [#---------]  12% loss 3.0000 | lr 6.00e-04 | gnorm 1.500 | 00:02<00:16") {
		t.Fatalf("redraw %q", got)
	}

	// Messages go above the bar.
	buf.Reset()
	b.Println("val loss 2.9")
	if got := buf.String(); !strings.HasPrefix(got, "\r\x1b[Kval loss 2.9\ntrain  12/100") {
		t.Fatalf("println %q", got)
	}

	// The last step always draws, and Finish ends the line.
	buf.Reset()
	clk.add(time.Millisecond)
	b.Update(100, Stats{Loss: 1})
	if !strings.Contains(buf.String(), "100/100 [##########] 100% loss 1.0000") {
		t.Fatalf("final %q", buf.String())
	}
	buf.Reset()
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); !strings.HasSuffix(got, "\x1b[K\n") || !strings.Contains(got, "<00:00") {
		t.Fatalf("finish %q", got)
	}
}

func TestPlainEveryN(t *testing.T) {
	clk := newClock()
	var buf bytes.Buffer
	b := New(&buf, 50, Options{Mode: Plain, Every: 10, Now: clk.now})
	for s := 1; s <= 45; s++ {
		clk.add(time.Second)
		b.Update(s, Stats{Loss: 2})
	}
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	// Steps 1, 10, 20, 30, 40, then Finish at 45.
	if len(lines) != 6 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	if strings.ContainsAny(buf.String(), "\r\x1b#") {
		t.Fatalf("plain output has terminal control or bar: %q", buf.String())
	}
	if want := "20/50  40% loss 2.0000 | 00:20<00:30"; lines[2] != want {
		t.Fatalf("line %q, want %q", lines[2], want)
	}
	if !strings.HasPrefix(lines[5], "45/50") {
		t.Fatalf("finish line %q", lines[5])
	}
}

func TestPlainFinishNoDuplicate(t *testing.T) {
	var buf bytes.Buffer
	clk := newClock()
	b := New(&buf, 20, Options{Mode: Plain, Every: 10, Now: clk.now})
	for s := 1; s <= 20; s++ {
		b.Update(s, Stats{})
	}
	b.Finish()
	if n := strings.Count(buf.String(), "\n"); n != 3 { // steps 1, 10, 20
		t.Fatalf("%d lines: %q", n, buf.String())
	}
	if strings.Count(buf.String(), "20/20") != 1 {
		t.Fatalf("last step printed twice: %q", buf.String())
	}
}

func TestResumeETAAndUnknownTotal(t *testing.T) {
	clk := newClock()
	var buf bytes.Buffer
	// Resumed at step 90 of 100: ETA from the 5 steps done in this run.
	b := New(&buf, 100, Options{Mode: Plain, Every: 5, Start: 90, Now: clk.now})
	clk.add(10 * time.Second)
	for s := 91; s <= 95; s++ {
		b.Update(s, Stats{})
	}
	if !strings.Contains(buf.String(), "95/100  95% 00:10<00:10") {
		t.Fatalf("resume: %q", buf.String())
	}
	buf.Reset()
	u := New(&buf, 0, Options{Mode: Plain, Now: clk.now})
	for s := 1; s <= 20; s++ {
		u.Update(s, Stats{Loss: 1})
	}
	// Default for an unknown total: the first step, then every 10.
	if got := buf.String(); got != "step 1 loss 1.0000 | 00:00\nstep 10 loss 1.0000 | 00:00\nstep 20 loss 1.0000 | 00:00\n" {
		t.Fatalf("unknown total %q", got)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorReported(t *testing.T) {
	b := New(failWriter{}, 10, Options{Mode: Plain})
	b.Update(1, Stats{})
	if err := b.Finish(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Finish = %v", err)
	}
}

func TestAutoModeNonTerminal(t *testing.T) {
	var buf bytes.Buffer
	if b := New(&buf, 10, Options{}); b.term {
		t.Fatal("a bytes.Buffer was taken for a terminal")
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -4500: "-4,500"} {
		if got := groupThousands(in); got != want {
			t.Errorf("groupThousands(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{0: "00:00", 59 * time.Second: "00:59", 61 * time.Minute: "1:01:00", -time.Second: "00:00"} {
		if got := formatDuration(in); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", in, got, want)
		}
	}
}
