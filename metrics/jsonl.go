package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sync"
)

// JSONL appends JSON records to a file, one per line. It is safe for
// concurrent use.
type JSONL struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// NewJSONL creates (or truncates) path for writing records.
func NewJSONL(path string) (*JSONL, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &JSONL{f: f, path: path}, nil
}

// AppendJSONL opens path for appending records, creating it if needed; a
// resumed run continues the previous run's file.
func AppendJSONL(path string) (*JSONL, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &JSONL{f: f, path: path}, nil
}

// Write encodes record (a struct or map) as one JSON line and writes it
// with a single write call. NaN and infinite floats (a diverged step) are
// written as null, since JSON has no NaN. Records that do not encode to a
// JSON object (numbers, strings, channels) are an error and nothing is
// written.
func (j *JSONL) Write(record any) error {
	b, err := json.Marshal(record)
	var unsupported *json.UnsupportedValueError
	if errors.As(err, &unsupported) {
		b, err = json.Marshal(sanitize(reflect.ValueOf(record)))
	}
	if err != nil {
		return fmt.Errorf("metrics %s: encode record: %w", j.path, err)
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("metrics %s: record %T is not a JSON object", j.path, record)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return fmt.Errorf("metrics %s: write after Close", j.path)
	}
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("metrics %s: %w", j.path, err)
	}
	return nil
}

// Close syncs and closes the file. Closing twice is a no-op.
func (j *JSONL) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	serr := j.f.Sync()
	cerr := j.f.Close()
	j.f = nil
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("metrics %s: close: %w", j.path, err)
	}
	return nil
}

// ReadJSONL reads every complete record of path as a generic map (numbers as
// float64). A final line without its newline (a crash mid-write) is dropped
// if it does not parse; a bad line elsewhere is an error naming its line.
func ReadJSONL(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	return readJSONL(f, path)
}

func readJSONL(r io.Reader, name string) ([]map[string]any, error) {
	br := bufio.NewReader(r)
	var out []map[string]any
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		complete := err == nil
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("metrics %s: %w", name, err)
		}
		if t := bytes.TrimSpace(b); len(t) > 0 {
			var m map[string]any
			if jerr := json.Unmarshal(t, &m); jerr != nil {
				if !complete {
					break // torn final line
				}
				return nil, fmt.Errorf("metrics %s line %d: %w", name, line, jerr)
			}
			out = append(out, m)
		}
		if !complete {
			break
		}
	}
	return out, nil
}

// Series extracts (x, y) pairs of two numeric fields from records, skipping
// records that lack either (e.g. eval-only lines). Handy for plotting.
func Series(records []map[string]any, xKey, yKey string) (x, y []float64) {
	for _, r := range records {
		xv, ok1 := r[xKey].(float64)
		yv, ok2 := r[yKey].(float64)
		if ok1 && ok2 {
			x, y = append(x, xv), append(y, yv)
		}
	}
	return x, y
}
