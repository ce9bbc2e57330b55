package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfigFieldsListsEveryMissingField(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"n_head": 4, "n_positions": 64, "n_embd": null, "activation_function": "gelu_new"}`)
	err := CheckConfigFields(dir)
	if err == nil || !strings.Contains(err.Error(), "lacks 3 required field(s): vocab_size, n_layer, n_embd") {
		t.Fatalf("got %v", err)
	}
	write(`{"vocab_size": 256, "n_layer": 2, "n_head": 4, "n_embd": 128, "n_positions": 64}`)
	if err := CheckConfigFields(dir); err != nil {
		t.Fatalf("complete config: %v", err)
	}
	if err := CheckConfigFields(filepath.Join(dir, "none")); err != nil {
		t.Fatalf("no config.json is ReadConfig's to report: %v", err)
	}
}
