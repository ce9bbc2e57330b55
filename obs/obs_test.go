package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestRegistryTextFormat(t *testing.T) {
	r := NewRegistry()
	r.Set("strand_loss", "training loss", Labels{"rank": "1"}, 2.5)
	r.Set("strand_loss", "training loss", Labels{"rank": "0"}, 3)
	r.Add("strand_collective_bytes_total", "bytes moved", Labels{"group": "dp"}, 100)
	r.Add("strand_collective_bytes_total", "bytes moved", Labels{"group": "dp"}, 28)
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP strand_collective_bytes_total bytes moved
# TYPE strand_collective_bytes_total counter
strand_collective_bytes_total{group="dp"} 128
# HELP strand_loss training loss
# TYPE strand_loss gauge
strand_loss{rank="0"} 3
strand_loss{rank="1"} 2.5
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if v, ok := r.Value("strand_loss", Labels{"rank": "1"}); !ok || v != 2.5 {
		t.Fatalf("Value = %v, %v", v, ok)
	}
}

func TestOnScrapePublishesLazily(t *testing.T) {
	r := NewRegistry()
	n := 0
	r.OnScrape(func(r *Registry) { n++; r.Set("scrapes", "", nil, float64(n)) })
	var b bytes.Buffer
	_ = r.WriteText(&b)
	b.Reset()
	_ = r.WriteText(&b)
	if !strings.Contains(b.String(), "scrapes 2\n") {
		t.Fatalf("got %q", b.String())
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"tokens/s": "tokens_s", "loss": "loss", "9lives": "_9lives", "a.b-c": "a_b_c", "": "_",
	} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestServeMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewRegistry()
	r.Set("strand_step", "", nil, 7)
	addr, err := Serve(ctx, "127.0.0.1:0", r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "strand_step 7\n") {
		t.Fatalf("body %q lacks the gauge", body)
	}
}

func TestLoggerJSONCarriesRank(t *testing.T) {
	var b bytes.Buffer
	log, err := NewLogger("json", 3, &b)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello")
	_ = log.Sync()
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %q", b.String())
	}
	if m["rank"] != float64(3) || m["msg"] != "hello" {
		t.Fatalf("got %v", m)
	}
	if _, err := NewLogger("xml", 0, &b); err == nil {
		t.Fatal("unknown format accepted")
	}
}
