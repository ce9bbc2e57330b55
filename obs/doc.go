// Package obs builds strand's observability plumbing: zap loggers that tag
// every line with the rank, and a per-process Prometheus registry served on
// /metrics.
//
// The registry is client_golang's (prometheus.NewRegistry, never the global
// default one) with the Go runtime (go_*) and process (process_*)
// collectors. Registry.Set and Registry.Add create gauges and counters by
// name on first use, so the coordinator and every worker can publish the
// metrics a training loop reports (strand_loss, strand_tokens_per_s, ...)
// without declaring them; Registry.Register adds collectors that read
// totals kept elsewhere when scraped (the worker's transport counters).
package obs
