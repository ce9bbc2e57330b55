// Package metrics records training progress as JSON Lines: one JSON object
// per line, e.g. DIR/metrics.jsonl with one record per step
// ({"step":1,"loss":10.9,"lr":0.0006,"grad_norm":3.1,"tokens_per_s":4200}).
//
// Each record is written to the file as soon as it is logged (no user-space
// buffering), so a run that crashes keeps every line it logged; a torn last
// line from a crash mid-write is skipped by ReadJSONL.
package metrics
