package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strand-ml/strand/hf"
)

// RequiredConfigFields are the keys of a strand (GPT-2 layout) config.json
// that have no default (model.Config.WithDefaults fills the others).
var RequiredConfigFields = []string{"vocab_size", "n_layer", "n_head", "n_embd", "n_positions"}

// CheckConfigFields reports, in one error, every required field missing
// from (or null in) the config.json of the checkpoint in dir, so a
// hand-written or truncated config is fixed in one go rather than one
// "must be positive" at a time. A Hugging Face Llama-family directory
// (hf.IsDir) is checked by its own reader; a missing or unreadable file is
// left to ReadConfig's error.
func CheckConfigFields(dir string) error {
	if hf.IsDir(dir) {
		return nil
	}
	path := filepath.Join(dir, ConfigFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checkpoint config: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil // ReadConfig names the syntax error
	}
	var missing []string
	for _, k := range RequiredConfigFields {
		if v, ok := fields[k]; !ok || string(v) == "null" {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("checkpoint config %s lacks %d required field(s): %s", path, len(missing), strings.Join(missing, ", "))
}
