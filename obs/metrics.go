package obs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Labels are a metric's label pairs, e.g. {"group": "dp"}.
type Labels map[string]string

// Registry holds gauges and counters and writes them in the Prometheus text
// exposition format (version 0.0.4). It is safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
	hooks    []func(*Registry) // run before every scrape
}

type family struct {
	help, kind string // kind is "gauge" or "counter"
	series     map[string]*series
}

type series struct {
	labels string // rendered {k="v",...}, sorted by key
	value  float64
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{families: make(map[string]*family)} }

// Set sets gauge name{labels} to v.
func (r *Registry) Set(name, help string, labels Labels, v float64) {
	r.update(name, help, "gauge", labels, func(s *series) { s.value = v })
}

// SetCounter sets counter name{labels} to the running total v (for totals
// kept elsewhere, e.g. in atomics published by an OnScrape hook).
func (r *Registry) SetCounter(name, help string, labels Labels, v float64) {
	r.update(name, help, "counter", labels, func(s *series) { s.value = v })
}

// Add adds v to counter name{labels}.
func (r *Registry) Add(name, help string, labels Labels, v float64) {
	r.update(name, help, "counter", labels, func(s *series) { s.value += v })
}

func (r *Registry) update(name, help, kind string, labels Labels, f func(*series)) {
	name = SanitizeName(name)
	key := renderLabels(labels)
	r.mu.Lock()
	defer r.mu.Unlock()
	fam, ok := r.families[name]
	if !ok {
		fam = &family{help: help, kind: kind, series: make(map[string]*series)}
		r.families[name] = fam
	}
	s, ok := fam.series[key]
	if !ok {
		s = &series{labels: key}
		fam.series[key] = s
	}
	f(s)
}

// Value returns the current value of name{labels} and whether it exists.
func (r *Registry) Value(name string, labels Labels) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fam, ok := r.families[SanitizeName(name)]
	if !ok {
		return 0, false
	}
	s, ok := fam.series[renderLabels(labels)]
	if !ok {
		return 0, false
	}
	return s.value, true
}

// OnScrape registers f to run before every WriteText, so hot paths can keep
// plain atomic counters and publish them only when someone looks.
func (r *Registry) OnScrape(f func(*Registry)) {
	r.mu.Lock()
	r.hooks = append(r.hooks, f)
	r.mu.Unlock()
}

// WriteText writes every metric, families and series in sorted order.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	hooks := slices.Clone(r.hooks)
	r.mu.Unlock()
	for _, h := range hooks {
		h(r)
	}
	r.mu.Lock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fam := r.families[n]
		if fam.help != "" {
			fmt.Fprintf(&b, "# HELP %s %s\n", n, escapeHelp(fam.help))
		}
		fmt.Fprintf(&b, "# TYPE %s %s\n", n, fam.kind)
		keys := make([]string, 0, len(fam.series))
		for k := range fam.series {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s%s %s\n", n, k, strconv.FormatFloat(fam.series[k].value, 'g', -1, 64))
		}
	}
	r.mu.Unlock()
	_, err := io.WriteString(w, b.String())
	return err
}

// Handler serves the registry on any path (mount it at /metrics).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = r.WriteText(w)
	})
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

func renderLabels(l Labels) string {
	if len(l) == 0 {
		return ""
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", SanitizeName(k), l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
