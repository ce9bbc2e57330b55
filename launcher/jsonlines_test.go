package launcher

import (
	"encoding/json"
	"testing"
)

func TestWithRankKeepsLinesJSON(t *testing.T) {
	cases := []struct {
		in   string
		rank float64
		msg  string
	}{
		{`{"step":3,"loss":1.5}` + "\n", 2, ""},
		{`{}` + "\n", 2, ""},
		{`{"level":"info","rank":1,"msg":"joined"}` + "\n", 1, "joined"},
		{"loading data (the Go tree) \"quoted\"\n", 2, "loading data (the Go tree) \"quoted\""},
		{`{"not json` + "\n", 2, `{"not json`},
	}
	for _, c := range cases {
		out := withRank([]byte(c.in), 2)
		if out[len(out)-1] != '\n' {
			t.Fatalf("%q: no newline", out)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%q -> %q: %v", c.in, out, err)
		}
		if m["rank"] != c.rank {
			t.Errorf("%q -> %q: rank %v, want %v", c.in, out, m["rank"], c.rank)
		}
		if c.msg != "" && m["msg"] != c.msg {
			t.Errorf("%q -> %q: msg %v", c.in, out, m["msg"])
		}
	}
	if out := withRank([]byte(`{"step":3}`+"\n"), 0); string(out) != `{"rank":0,"step":3}`+"\n" {
		t.Errorf("got %q", out)
	}
}
