package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLogFormatJSON(t *testing.T) {
	for args, want := range map[string]bool{
		"train --log-format json":           true,
		"train --log-format=json --nproc 2": true,
		"train -log-format json":            true,
		"train --log-format console":        false,
		"train":                             false,
		"train -- --log-format json":        false,
	} {
		if got := logFormatJSON(strings.Fields(args)); got != want {
			t.Errorf("%q: %v, want %v", args, got, want)
		}
	}
}

func TestJSONLinesKeepsEveryLineJSON(t *testing.T) {
	var b bytes.Buffer
	j := &jsonLines{w: &b, level: "info"}
	j.Write([]byte(`{"step":1,"loss":2.5}` + "\nloading data "))
	j.Write([]byte("x.txt\n\n{\"not\": json\r\nprogress\rdone\nunterminated"))
	j.level = "error"
	j.Close()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []map[string]any{
		{"step": 1.0, "loss": 2.5},
		{"level": "info", "msg": "loading data x.txt"},
		{"level": "info", "msg": `{"not": json`},
		{"level": "info", "msg": "done"},
		{"level": "error", "msg": "unterminated"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		for k, v := range want[i] {
			if m[k] != v {
				t.Errorf("line %d %q: %s = %v, want %v", i, line, k, m[k], v)
			}
		}
	}
}
