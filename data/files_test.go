package data

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestMixedDirectorySaysWhichFiles: a directory mixing .txt, .jsonl and a
// .bin shard reads the text files, skips the shard as binary, and says so.
func TestMixedDirectorySaysWhichFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.txt", []byte("hello text"))
	b := write("b.jsonl", []byte(`{"prompt":"x"}`+"\n"))
	shard := filepath.Join(dir, "c.bin")
	if err := WriteShard(shard, []uint16{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(context.Background(), dir, byteTok{}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Paths, []string{a, b}) || !reflect.DeepEqual(c.Skipped, []string{shard}) || !c.Mixed() {
		t.Fatalf("paths %v, skipped %v, mixed %v", c.Paths, c.Skipped, c.Mixed())
	}
	sum := c.FileSummary()
	for _, want := range []string{"2 files", "1 .jsonl (" + b + ")", "1 .txt (" + a + ")", "skipped 1 binary: " + shard} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary %q lacks %q", sum, want)
		}
	}
	files, skipped, err := TextFiles(dir)
	if err != nil || !reflect.DeepEqual(files, []string{a, b}) || !reflect.DeepEqual(skipped, []string{shard}) {
		t.Fatalf("TextFiles(dir) = %v, %v, %v", files, skipped, err)
	}
	if _, _, err := TextFiles(shard); err == nil {
		t.Fatal("TextFiles accepted a shard")
	}
	one, err := Load(context.Background(), a, byteTok{}, LoadOptions{})
	if err != nil || one.Mixed() {
		t.Fatalf("one text file: mixed %v, %v", one.Mixed(), err)
	}
}

func TestCheckNamesBadSpecs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"", dir, filepath.Join(dir, "a.txt"), filepath.Join(dir, "*.txt")} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "*.bin")} {
		if err := Check(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("Check(%q) = %v, want an error naming it", bad, err)
		}
	}
}
