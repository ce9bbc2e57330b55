// Package obs builds strand's observability plumbing: zap loggers that tag
// every line with the rank, and a small Prometheus registry that serves the
// text exposition format on /metrics.
//
// The registry is deliberately tiny (gauges and counters with labels, no
// histograms) so that the coordinator and every worker can expose step time,
// tokens/s, loss and collective traffic without pulling in client_golang.
package obs
