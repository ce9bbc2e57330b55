package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegistryExposition(t *testing.T) {
	r := NewRegistry()
	must(t, r.Set("strand_loss", "training loss", Labels{"rank": "1"}, 2.5))
	must(t, r.Set("strand_loss", "training loss", Labels{"rank": "0"}, 3))
	must(t, r.Add("strand_collective_bytes_total", "bytes moved", Labels{"group": "dp"}, 100))
	must(t, r.Add("strand_collective_bytes_total", "bytes moved", Labels{"group": "dp"}, 28))
	must(t, r.Set("strand_world_size", "", nil, 4))
	want := `# HELP strand_collective_bytes_total bytes moved
# TYPE strand_collective_bytes_total counter
strand_collective_bytes_total{group="dp"} 128
# HELP strand_loss training loss
# TYPE strand_loss gauge
strand_loss{rank="0"} 3
strand_loss{rank="1"} 2.5
# HELP strand_world_size strand_world_size
# TYPE strand_world_size gauge
strand_world_size 4
`
	if err := testutil.GatherAndCompare(r, strings.NewReader(want), "strand_collective_bytes_total", "strand_loss", "strand_world_size"); err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Value("strand_loss", Labels{"rank": "1"}); !ok || v != 2.5 {
		t.Fatalf("Value = %v, %v", v, ok)
	}
	if v, ok := r.Value("strand_collective_bytes_total", Labels{"group": "dp"}); !ok || v != 128 {
		t.Fatalf("Value(counter) = %v, %v", v, ok)
	}
	if _, ok := r.Value("strand_loss", Labels{"rank": "2"}); ok {
		t.Fatal("Value found a series never set")
	}
	if _, ok := r.Value("strand_loss", nil); ok {
		t.Fatal("Value matched a labelled series without labels")
	}
}

func TestRegistryRefusesInconsistentUse(t *testing.T) {
	r := NewRegistry()
	must(t, r.Set("strand_loss", "", Labels{"rank": "0"}, 1))
	must(t, r.Add("strand_bytes_total", "", nil, 1))
	for _, c := range []struct {
		name string
		err  error
	}{
		{"other label names", r.Set("strand_loss", "", Labels{"node": "0"}, 1)},
		{"extra label", r.Set("strand_loss", "", Labels{"rank": "0", "dir": "send"}, 1)},
		{"gauge as counter", r.Add("strand_loss", "", Labels{"rank": "0"}, 1)},
		{"counter as gauge", r.Set("strand_bytes_total", "", nil, 1)},
		{"counter going down", r.Add("strand_bytes_total", "", nil, -1)},
		{"runtime collector's name", r.Set("go_goroutines", "", nil, 1)},
		{"handler's name", r.Add("promhttp_metric_handler_errors_total", "", Labels{"cause": "x"}, 1)},
		{"reserved label", r.Set("strand_x", "", Labels{"__name": "a"}, 1)},
		{"colliding labels", r.Set("strand_y", "", Labels{"a-b": "1", "a.b": "2"}, 1)},
	} {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if v, ok := r.Value("strand_bytes_total", nil); !ok || v != 1 {
		t.Fatalf("a refused call changed the counter: %v, %v", v, ok)
	}
	if v, ok := r.Value("strand_loss", Labels{"rank": "0"}); !ok || v != 1 {
		t.Fatalf("a refused call changed the gauge: %v, %v", v, ok)
	}
}

// testCollector publishes a total kept outside the registry, the way the
// worker's transport counters are published.
type testCollector struct{ n *atomic.Int64 }

var testDesc = prometheus.NewDesc("strand_test_total", "a total kept in an atomic", []string{"dir"}, nil)

func (c testCollector) Describe(ch chan<- *prometheus.Desc) { ch <- testDesc }
func (c testCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(testDesc, prometheus.CounterValue, float64(c.n.Load()), "send")
}

func TestRegisterCollectorReadsAtScrape(t *testing.T) {
	r := NewRegistry()
	var n atomic.Int64
	must(t, r.Register(testCollector{&n}))
	n.Add(5)
	if v, ok := r.Value("strand_test_total", Labels{"dir": "send"}); !ok || v != 5 {
		t.Fatalf("Value = %v, %v", v, ok)
	}
	n.Add(2)
	if v, _ := r.Value("strand_test_total", Labels{"dir": "send"}); v != 7 {
		t.Fatalf("second scrape = %v, want 7", v)
	}
	if err := r.Register(testCollector{&n}); err == nil {
		t.Fatal("registering the same metric twice was accepted")
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	r := NewRegistry()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := r.Add("strand_calls_total", "", Labels{"g": strconv.Itoa(g % 2)}, 1); err != nil {
					t.Error(err)
					return
				}
				if err := r.Set("strand_last", "", Labels{"g": strconv.Itoa(g)}, float64(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for g := range 2 {
		if v, _ := r.Value("strand_calls_total", Labels{"g": strconv.Itoa(g)}); v != 200 {
			t.Fatalf("g=%d: %v calls, want 200", g, v)
		}
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
	must(t, r.Set("strand_step", "", nil, 7))
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
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q: want the text format", ct)
	}
	// The gauge, the Go runtime and process collectors, the handler's own
	// count (this scrape is counted after it is served).
	for _, want := range []string{"\nstrand_step 7\n", "\ngo_goroutines ", "\ngo_memstats_heap_alloc_bytes ",
		"\nprocess_cpu_seconds_total ", "\nprocess_resident_memory_bytes ", "\npromhttp_metric_handler_requests_total{code=\"200\"} 0\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
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
