package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/strand-ml/strand/parallel/pipeline"
)

func TestTable(t *testing.T) {
	var buf bytes.Buffer
	if err := table(&buf, []int{2, 8}, []int{4}, []int{2}, pipeline.UnitCosts); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"| 2 | 4 | interleaved V=2 | 11.1% | 11.1% | 13.50 | 0.900 | 0.556 | 2.5 1.5 | 11.1% |",
		"| 2 | 4 | zb-h1 | 7.7% | 7.7% | 13.00 | 0.867 | 0.385 | 2 2 (before B: 2 1) | 7.7% |",
		"| 8 | 4 | interleaved V=2 | n/a: m is not a multiple of p",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if _, err := ints("4,x"); err == nil {
		t.Fatal("bad list accepted")
	}
}
