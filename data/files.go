package data

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Mixed reports whether the corpus came from files of more than one kind
// (extension) or left some out as binary: then which files it used is
// worth saying (FileSummary).
func (c *Corpus) Mixed() bool {
	return len(c.Skipped) > 0 || len(extensions(c.Paths)) > 1
}

// FileSummary says which files the corpus read, grouped by extension, and
// which it skipped, e.g.
//
//	3 files: 2 .txt (a.txt, b.txt), 1 .jsonl (c.jsonl); skipped 1 binary: d.bin
func (c *Corpus) FileSummary() string {
	exts := extensions(c.Paths)
	keys := make([]string, 0, len(exts))
	for k := range exts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var groups []string
	for _, k := range keys {
		groups = append(groups, fmt.Sprintf("%d %s (%s)", len(exts[k]), k, listNames(exts[k])))
	}
	out := fmt.Sprintf("%d files: %s", len(c.Paths), strings.Join(groups, ", "))
	if len(c.Skipped) > 0 {
		out += fmt.Sprintf("; skipped %d binary: %s", len(c.Skipped), listNames(c.Skipped))
	}
	return out
}

// extensions groups paths by extension ("(none)" for none).
func extensions(paths []string) map[string][]string {
	m := map[string][]string{}
	for _, p := range paths {
		e := filepath.Ext(p)
		if e == "" {
			e = "(no extension)"
		}
		m[e] = append(m[e], p)
	}
	return m
}

// listNames joins up to four paths, then says how many more.
func listNames(paths []string) string {
	if len(paths) <= 4 {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:4], ", "), len(paths)-4)
}

// TextFiles lists the text files a data spec (a file, directory or glob,
// as Load takes them) names, in the order Load reads them, and the files
// it leaves out as binary: for a tokenizer trained on the same text.
// Shard data is an error.
func TextFiles(spec string) (files, skipped []string, err error) {
	cands, shards, err := resolve(spec)
	if err == nil && shards {
		err = errors.New("names llm.c token shards (.bin), not text")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("data %q: %w", spec, err)
	}
	for _, p := range cands {
		bin, err := isBinary(p)
		if err != nil {
			return nil, nil, err
		}
		if bin {
			skipped = append(skipped, p)
		} else {
			files = append(files, p)
		}
	}
	if len(files) == 0 {
		return nil, skipped, fmt.Errorf("data %q: no text files among %d candidates (all contain NUL bytes)", spec, len(cands))
	}
	return files, skipped, nil
}

// isBinary is readText's test: a NUL byte in the first 8 KiB.
func isBinary(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 8<<10)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	return bytes.IndexByte(head[:n], 0) >= 0, nil
}

// Check reports, without reading any data, whether spec names data Load
// can read (the files exist; a glob matches; shards and text are not
// mixed): a launcher checks --data before starting workers, so a bad path
// is one clear error instead of one per rank. "" (the Go sources) passes.
func Check(spec string) error {
	if spec == "" {
		return nil
	}
	if _, _, err := resolve(spec); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == spec {
			err = pe.Err // the spec is named once
		}
		return fmt.Errorf("load data %q: %w", spec, err)
	}
	return nil
}
