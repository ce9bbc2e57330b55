// Package trace records what each rank does over time (forward, backward,
// send, receive, all-reduce, optimizer) as Chrome trace events, the JSON
// format that chrome://tracing and https://ui.perfetto.dev open. Each rank
// writes its own part; Merge joins them into one file with one process row
// per rank, so a pipeline schedule and the overlap of gradient all-reduce
// with backward can be seen directly.
package trace
