package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckOutDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("x"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	for _, c := range []struct {
		out       string
		overwrite bool
		want      string
	}{
		{filepath.Join(dir, "new"), false, ""},
		{empty, false, ""},
		{dir, true, ""},
		{dir, false, "is not empty (empty, f)"},
		{file, false, "is a file"},
		{"", false, "--out is required"},
	} {
		err := checkOutDir(c.out, c.overwrite)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("checkOutDir(%q, %v) = %v, want %q", c.out, c.overwrite, err, c.want)
		}
		if _, usage := err.(usageError); err != nil && !usage && c.want != "is a file" {
			t.Errorf("checkOutDir(%q): %T is not a usage error", c.out, err)
		}
	}
}
