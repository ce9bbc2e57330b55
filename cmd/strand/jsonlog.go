package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
)

// logFormatJSON reports whether args ask for --log-format json.
func logFormatJSON(args []string) bool {
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "--log-format" || a == "-log-format":
			if i+1 < len(args) && args[i+1] == "json" {
				return true
			}
		case a == "--log-format=json" || a == "-log-format=json":
			return true
		}
	}
	return false
}

// jsonLines keeps a command's output one JSON object per line under
// --log-format json: JSON object lines (logs, progress) pass through, and
// a plain-text line (a note, the final error) becomes
// {"level":LEVEL,"msg":TEXT}. A partial line waits for its end (Close
// flushes it).
type jsonLines struct {
	w     io.Writer
	level string
	buf   []byte
}

func (j *jsonLines) Write(p []byte) (int, error) {
	j.buf = append(j.buf, p...)
	for {
		i := bytes.IndexByte(j.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := j.line(j.buf[:i]); err != nil {
			return len(p), err
		}
		j.buf = j.buf[i+1:]
	}
}

func (j *jsonLines) line(b []byte) error {
	b = bytes.TrimRight(b, "\r")
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if b[0] == '{' && json.Valid(b) {
		_, err := j.w.Write(append(b, '\n'))
		return err
	}
	text := strings.TrimSpace(string(b))
	// a terminal redraw ("\r...") leaves the last state only
	if k := strings.LastIndexByte(text, '\r'); k >= 0 {
		text = text[k+1:]
	}
	out, err := json.Marshal(map[string]string{"level": j.level, "msg": text})
	if err != nil {
		return err
	}
	_, err = j.w.Write(append(out, '\n'))
	return err
}

// Close writes a last line that had no newline.
func (j *jsonLines) Close() error {
	if len(j.buf) == 0 {
		return nil
	}
	err := j.line(j.buf)
	j.buf = nil
	return err
}
