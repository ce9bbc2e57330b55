package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// StepDir is one checkpoints/step_N directory of a run directory,
// committed or not.
type StepDir struct {
	Step      int
	Path      string
	Committed bool // its commit marker exists (it may still fail Verify)
}

// Steps lists the step_N directories under run/checkpoints, oldest first,
// committed or not: what --resume must account for before choosing one.
// A run without checkpoints/ has none.
func Steps(run string) ([]StepDir, error) {
	steps, err := listSteps(filepath.Join(run, checkpointDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return steps, err
}

// listSteps lists the step_N directories under parent, oldest first.
func listSteps(parent string) ([]StepDir, error) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, err
	}
	var out []StepDir
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, stepPrefix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(name, stepPrefix))
		if err != nil {
			continue
		}
		p := filepath.Join(parent, name)
		_, serr := os.Stat(filepath.Join(p, CommitFile))
		out = append(out, StepDir{Step: n, Path: p, Committed: serr == nil})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out, nil
}
