package obs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Labels are a metric's label pairs, e.g. {"group": "dp"}.
type Labels map[string]string

// Registry is one process's Prometheus registry: the Go runtime and process
// collectors, the gauges and counters set by name through Set and Add, and
// any collector added with Register. Each process makes its own (there is
// no global default registry). It is safe for concurrent use and
// implements prometheus.Gatherer.
type Registry struct {
	reg *prometheus.Registry

	mu       sync.Mutex
	families map[string]*family // by sanitized name
}

// family is one named metric created through Set or Add. Its kind and
// label names are fixed by its first use.
type family struct {
	kind    string   // "gauge" or "counter"
	labels  []string // sorted, sanitized label names
	gauge   *prometheus.GaugeVec
	counter *prometheus.CounterVec
}

// NewRegistry returns a registry holding the Go runtime collector (go_*)
// and the process collector (process_*: CPU, memory, file descriptors).
func NewRegistry() *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), families: make(map[string]*family)}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Register adds a collector, e.g. one that publishes totals kept in
// atomics by a hot path only when scraped (prometheus.MustNewConstMetric).
func (r *Registry) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register collector: %w", err)
	}
	return nil
}

// Gather implements prometheus.Gatherer.
func (r *Registry) Gather() ([]*dto.MetricFamily, error) { return r.reg.Gather() }

// Set sets gauge name{labels} to v. The first use of a name fixes its
// help text and label names; a later call with other label names, or a
// name already used by a counter or a registered collector, is an error.
func (r *Registry) Set(name, help string, labels Labels, v float64) error {
	f, vals, err := r.family(name, help, "gauge", labels)
	if err != nil {
		return err
	}
	g, err := f.gauge.GetMetricWithLabelValues(vals...)
	if err != nil {
		return fmt.Errorf("metrics: gauge %s%v: %w", SanitizeName(name), labels, err)
	}
	g.Set(v)
	return nil
}

// Add adds v (>= 0) to counter name{labels}. The rules of Set apply.
func (r *Registry) Add(name, help string, labels Labels, v float64) error {
	f, vals, err := r.family(name, help, "counter", labels)
	if err != nil {
		return err
	}
	c, err := f.counter.GetMetricWithLabelValues(vals...)
	if err != nil {
		return fmt.Errorf("metrics: counter %s%v: %w", SanitizeName(name), labels, err)
	}
	if v < 0 {
		return fmt.Errorf("metrics: counter %s%v: adding %v: a counter only goes up", SanitizeName(name), labels, v)
	}
	c.Add(v)
	return nil
}

// family returns name's family, creating and registering it on first use,
// and the label values in the family's label-name order.
func (r *Registry) family(name, help, kind string, labels Labels) (*family, []string, error) {
	name = SanitizeName(name)
	if strings.HasPrefix(name, "promhttp_") {
		return nil, nil, fmt.Errorf("metrics: %s: the promhttp_ prefix belongs to the /metrics handler", name)
	}
	keys := make([]string, 0, len(labels))
	byKey := make(map[string]string, len(labels))
	for k, v := range labels {
		sk := SanitizeName(k)
		if _, dup := byKey[sk]; dup {
			return nil, nil, fmt.Errorf("metrics: %s: label names %v collide once sanitized", name, labels)
		}
		keys = append(keys, sk)
		byKey[sk] = v
	}
	sort.Strings(keys)
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.families[name]
	if !ok {
		f = &family{kind: kind, labels: keys}
		var c prometheus.Collector
		if kind == "gauge" {
			f.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: helpOrName(help, name)}, keys)
			c = f.gauge
		} else {
			f.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: helpOrName(help, name)}, keys)
			c = f.counter
		}
		if err := r.reg.Register(c); err != nil {
			return nil, nil, fmt.Errorf("metrics: %s %s: %w", kind, name, err)
		}
		r.families[name] = f
	}
	if f.kind != kind {
		return nil, nil, fmt.Errorf("metrics: %s is a %s, not a %s", name, f.kind, kind)
	}
	if !slices.Equal(f.labels, keys) {
		return nil, nil, fmt.Errorf("metrics: %s has labels %v, got %v", name, f.labels, keys)
	}
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = byKey[k]
	}
	return f, vals, nil
}

// helpOrName keeps every family's HELP line non-empty.
func helpOrName(help, name string) string {
	if help == "" {
		return name
	}
	return help
}

// Value returns the current value of gauge or counter name{labels} (of
// any collector in the registry) and whether it exists. It gathers the
// whole registry: meant for tests and tools, not hot paths.
func (r *Registry) Value(name string, labels Labels) (float64, bool) {
	fams, err := r.reg.Gather()
	if err != nil {
		return 0, false
	}
	name = SanitizeName(name)
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			if !labelsMatch(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetUntyped() != nil:
				return m.GetUntyped().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsMatch(have []*dto.LabelPair, want Labels) bool {
	if len(have) != len(want) {
		return false
	}
	for _, p := range have {
		found := false
		for k, v := range want {
			if SanitizeName(k) == p.GetName() {
				found = v == p.GetValue()
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Handler serves the registry in the Prometheus exposition formats (text
// unless the scraper asks for another); mount it at /metrics. Scrapes are
// counted in promhttp_metric_handler_requests_total. A collector's error
// is reported in the response's metrics, not by failing the scrape.
func (r *Registry) Handler() http.Handler {
	h := promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: r.reg})
	return promhttp.InstrumentMetricHandler(r.reg, h)
}

// Serve listens on addr ("host:port", port 0 picks one) and serves the
// registry at /metrics until ctx ends. It returns the bound address.
func Serve(ctx context.Context, addr string, r *Registry) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed after start; nothing left to report to
		}
	}()
	return ln.Addr(), nil
}

// SanitizeName maps an arbitrary string to a valid Prometheus metric name:
// characters outside [a-zA-Z0-9_:] become '_', and a leading digit gets '_'.
func SanitizeName(s string) string {
	var b strings.Builder
	for i, c := range s {
		ok := c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9' && i > 0)
		if !ok && c >= '0' && c <= '9' {
			b.WriteByte('_')
			b.WriteRune(c)
			continue
		}
		if ok {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}
