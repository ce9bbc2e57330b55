package finetune

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/mesh"
)

// ppoResumeRun runs steps PPO steps on mesh m: from scratch, or restored
// from the newest checkpoint in from; then it saves into run (when not "")
// with runState. It returns the statistics of the steps it ran.
func ppoResumeRun(t *testing.T, m mesh.Mesh, from, run string, steps int, runState any) []PPOStats {
	t.Helper()
	stats, _ := ppoRunWith(t, m, nil, func(ctx context.Context, p *PPO, at PPOPlace) ([]PPOStats, error) {
		if from != "" {
			dir, _, err := checkpoint.Resolve(from)
			if err != nil {
				return nil, err
			}
			st, err := p.Restore(dir)
			if err != nil {
				return nil, err
			}
			var rs struct{ Drawn int }
			if err := json.Unmarshal(st.Run, &rs); err != nil || rs.Drawn != 8 {
				return nil, fmt.Errorf("run state %s came back, want the saved one", st.Run)
			}
		}
		var out []PPOStats
		for s := 0; s < steps; s++ {
			st, err := p.TrainStep(ctx, ppoPrompts)
			if err != nil {
				return out, fmt.Errorf("step %d: %w", p.Step, err)
			}
			out = append(out, st)
		}
		if run != "" {
			if _, err := p.Save(ctx, run, 2, at, runState); err != nil {
				return out, err
			}
		}
		return out, nil
	})
	return stats
}

// TestPPOCheckpointResume: 4 steps straight equal, bit for bit, 2 steps,
// a checkpoint, and 2 more steps of a fresh PPO restored from it in the
// same layout (policy, value model and head, all optimizer moments and the
// step come back); restored into other DP x TP x PP layouts, and from
// tensor- and pipeline-sharded checkpoints into one process, the
// statistics match within 1e-4.
func TestPPOCheckpointResume(t *testing.T) {
	dir := t.TempDir()
	one := mesh.Mesh{DP: 1, TP: 1, PP: 1}
	want := ppoResumeRun(t, one, "", "", 4, nil)
	type runState struct {
		Drawn int `json:"drawn"`
	}
	single := filepath.Join(dir, "single")
	first := ppoResumeRun(t, one, "", single, 2, runState{8})
	got := append(first, ppoResumeRun(t, one, single, "", 2, nil)...)
	for s := range want {
		if fmt.Sprint(got[s]) != fmt.Sprint(want[s]) {
			t.Errorf("step %d: %+v stopped at 2 and resumed, %+v straight", s+1, got[s], want[s])
		}
	}
	// the checkpoint is a model checkpoint of the policy (config.json,
	// model.safetensors) and its value/ a reward-model checkpoint
	ck, _, err := checkpoint.Resolve(single)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.ReadConfig(ck); err != nil {
		t.Fatal(err)
	}
	var vs struct {
		RewardHead RewardHead `json:"reward_head"`
	}
	if err := checkpoint.LoadTrainerState(filepath.Join(ck, PPOValueDir), &vs); err != nil || len(vs.RewardHead.Weight) == 0 {
		t.Fatalf("value/ holds no reward head: %v", err)
	}

	// single-file checkpoint resumed on dp2 x tp2
	ppoStatsClose(t, "1 -> dp2 x tp2", ppoResumeRun(t, mesh.Mesh{DP: 2, TP: 2, PP: 1}, single, "", 2, nil), want[2:])
	// sharded checkpoint (tp2) resumed in one process
	sharded := filepath.Join(dir, "tp2")
	ppoResumeRun(t, mesh.Mesh{DP: 1, TP: 2, PP: 1}, "", sharded, 2, runState{8})
	ck, _, err = checkpoint.Resolve(sharded)
	if err != nil {
		t.Fatal(err)
	}
	if idx, err := checkpoint.ReadIndex(filepath.Join(ck, PPOValueDir)); err != nil || idx == nil || idx.Layout.TP != 2 {
		t.Fatalf("tp2 value model is not sharded: %v", err)
	}
	ppoStatsClose(t, "tp2 -> 1", ppoResumeRun(t, one, sharded, "", 2, nil), want[2:])
	// pipeline stages: saved by two stages (the value head from the last),
	// resumed in one process; and the single checkpoint on tp2 x pp2
	staged := filepath.Join(dir, "pp2")
	ppoResumeRun(t, mesh.Mesh{DP: 1, TP: 1, PP: 2}, "", staged, 2, runState{8})
	ppoStatsClose(t, "pp2 -> 1", ppoResumeRun(t, one, staged, "", 2, nil), want[2:])
	ppoStatsClose(t, "1 -> tp2 x pp2", ppoResumeRun(t, mesh.Mesh{DP: 1, TP: 2, PP: 2}, single, "", 2, nil), want[2:])

	// A corrupted value model is refused.
	vf := filepath.Join(ck, PPOValueDir, "model-pp0-tp1.safetensors")
	raw, err := os.ReadFile(vf)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	if err := os.WriteFile(vf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _ = ppoRunWith(t, one, nil, func(ctx context.Context, p *PPO, at PPOPlace) ([]PPOStats, error) {
		if _, err := p.Restore(ck); err == nil {
			t.Errorf("restore from a checkpoint with a corrupted value model succeeded")
		}
		return nil, nil
	})
	// A checkpoint that is not PPO's (here: value/, a reward-model
	// checkpoint) is refused with the reason.
	_, _ = ppoRunWith(t, one, nil, func(ctx context.Context, p *PPO, at PPOPlace) ([]PPOStats, error) {
		if _, err := p.Restore(filepath.Join(ck, PPOValueDir)); err == nil || !strings.Contains(err.Error(), "not a PPO checkpoint") {
			t.Errorf("restore from a reward-model checkpoint: %v, want the reason", err)
		}
		return nil, nil
	})
	var st PPOState
	if err := checkpoint.LoadTrainerState(ck, &st); err != nil {
		t.Fatal(err)
	}
	if st.Step != 2 || st.Layout != (mesh.Mesh{DP: 1, TP: 2, PP: 1}).String() || len(st.ValueFiles) == 0 {
		raw, _ := json.Marshal(st)
		t.Errorf("trainer state %s: want step 2, layout tp2 and value checksums", raw)
	}
}
