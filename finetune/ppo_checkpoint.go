package finetune

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/safetensors"
	"github.com/strand-ml/strand/trainer"
)

// A PPO checkpoint is the project's normal checkpoint of the policy (so
// strand eval, generate and sft --ckpt load it as a model) with everything
// else a resumed run needs beside it:
//
//	config.json, model*.safetensors,   the policy and its AdamW moments:
//	optim*/optimizer.safetensors,      one model.safetensors without tensor
//	index.json                         parallelism, sharded otherwise
//	trainer_state.json                 PPOState: step, seed, layout, the value
//	                                   head's AdamW moments, the caller's state
//	                                   (e.g. its prompt sampler), checksums of
//	                                   value/
//	value/                             the value model in the same format with
//	                                   its moments; value/trainer_state.json
//	                                   holds its head as "reward_head", so
//	                                   value/ is also a reward-model checkpoint
//	commit.json                        written last (checkpoint.Seal)
//
// Reference and reward model are frozen: they come from the run's --ckpt and
// --rm again on resume. Sampling needs no saved generator position: step
// s's completion i is drawn from a stream seeded by (Seed, s, i).

// PPOValueDir is the value model's subdirectory in a PPO checkpoint.
const PPOValueDir = "value"

const ppoFormat = "strand-ppo-1"

// PPOState is a PPO checkpoint's trainer_state.json.
type PPOState struct {
	Format string    `json:"format"` // "strand-ppo-1"
	Step   int       `json:"step"`   // PPO steps taken
	Seed   uint64    `json:"seed"`
	Layout string    `json:"layout"` // mesh the checkpoint was written under
	Config PPOConfig `json:"ppo"`
	// ValueHead are the value head's AdamW moments (C weights, then the
	// bias) and update count; the head itself is value/'s reward_head.
	ValueHead ppoHeadMoments `json:"value_head_moments"`
	// ValueFiles are the SHA-256 sums of value/'s files (commit.json
	// covers only the top level; this file is covered by it).
	ValueFiles map[string]string `json:"value_sha256"`
	// Run is the caller's own state (strand ppo: its prompt sampler),
	// restored verbatim.
	Run json.RawMessage `json:"run,omitempty"`
}

type ppoHeadMoments struct {
	M    []float32 `json:"exp_avg"`
	V    []float32 `json:"exp_avg_sq"`
	Step int       `json:"step"`
}

// ppoValueState is value/trainer_state.json: the reader of a reward-model
// checkpoint (strand rm score, ppo --rm) finds the head under reward_head.
type ppoValueState struct {
	Step       int        `json:"step"`
	Seed       uint64     `json:"seed"`
	RewardHead RewardHead `json:"reward_head"`
}

// PPOPlace says where the calling rank sits in the job for Save: its rank
// in the world, the mesh and its coordinate, and a barrier over every rank
// (nil for a single process).
type PPOPlace struct {
	Rank    int
	Mesh    mesh.Mesh
	Coord   mesh.Coord
	Barrier func(ctx context.Context) error
}

// Save writes the checkpoint of step p.Step under run/checkpoints (keeping
// the newest keep) and returns its directory on rank 0 ("" elsewhere).
// Every rank of the job calls it at the same step; runState is stored as
// PPOState.Run. Every rank writes into one shared temporary directory
// (dp=0 ranks their tensor-parallel shards, rank 0 the single files), and
// rank 0 seals it after a barrier, so a checkpoint whose writing failed
// anywhere is never committed.
func (p *PPO) Save(ctx context.Context, run string, keep int, at PPOPlace, runState any) (string, error) {
	if err := p.gatherHead(ctx); err != nil {
		return "", fmt.Errorf("ppo checkpoint step %d: %w", p.Step, err)
	}
	sync := func() error {
		if at.Barrier == nil {
			return nil
		}
		return at.Barrier(ctx)
	}
	lead := at.Rank == 0
	tmp := checkpoint.TempDir(run, p.Step)
	vdir := filepath.Join(tmp, PPOValueDir)
	if lead {
		os.RemoveAll(tmp)
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return "", fmt.Errorf("ppo checkpoint: %w", err)
		}
	}
	if err := sync(); err != nil {
		return "", fmt.Errorf("ppo checkpoint step %d: %w", p.Step, err)
	}
	parts := []struct {
		dir string
		m   *model.GPT
		opt *optim.AdamW
		tr  *trainer.Trainer
	}{{tmp, p.Policy, p.optP, p.policy}, {vdir, p.Value.GPT, p.optV, p.value}}
	for _, pt := range parts {
		write := func() error {
			m1, v1, err := pt.tr.Moments(ctx) // ZeRO-1: gathered
			if err != nil {
				return err
			}
			return writePPOPart(pt.dir, at, pt.m, m1, v1, pt.opt.Step)
		}
		if pt.tr.ZeroShards() > 0 {
			write = func() error { return pt.tr.WriteZeroPart(pt.dir) }
		}
		if err := write(); err != nil {
			return "", fmt.Errorf("ppo checkpoint step %d: %w", p.Step, err)
		}
	}
	if err := sync(); err != nil {
		return "", fmt.Errorf("ppo checkpoint step %d: %w", p.Step, err)
	}
	var path string
	if lead {
		var err error
		if path, err = p.seal(run, tmp, keep, at, runState); err != nil {
			return "", fmt.Errorf("ppo checkpoint step %d: %w", p.Step, err)
		}
	}
	return path, sync()
}

// gatherHead gives every pipeline stage the last stage's value head and
// its AdamW state (only the last stage trains it; rank 0, on the first
// stage, writes it).
func (p *PPO) gatherHead(ctx context.Context) error {
	if p.Comms.PP.Size() == 1 {
		return nil
	}
	h, C := p.optH, len(p.Value.Head.Weight)
	buf := make([]float32, 0, 3*(C+1)+1)
	buf = append(append(buf, p.Value.Head.Weight...), p.Value.Head.Bias)
	buf = append(append(append(buf, h.M...), h.V...), float32(h.Step))
	if err := broadcastLast(ctx, p.Comms.PP, buf); err != nil {
		return fmt.Errorf("value head from the last pipeline stage: %w", err)
	}
	copy(p.Value.Head.Weight, buf[:C])
	p.Value.Head.Bias = buf[C]
	copy(h.M, buf[C+1:])
	copy(h.V, buf[2*(C+1):])
	h.Step = int(buf[3*(C+1)])
	return nil
}

// writePPOPart writes this rank's part of model m and its moments into dir:
// with one rank per model (no tensor or pipeline split) rank 0 writes
// config.json, model.safetensors and optimizer.safetensors; otherwise every
// dp=0 rank writes its shard files (rank 0 adds the index later).
func writePPOPart(dir string, at PPOPlace, m *model.GPT, m1, v1 []float32, optStep int) error {
	if at.Mesh.TP == 1 && at.Mesh.PP == 1 {
		if at.Rank != 0 {
			return nil
		}
		if err := checkpoint.WriteModel(dir, m); err != nil {
			return err
		}
		tensors := append(m.Params.TensorsOf("exp_avg.", m1), m.Params.TensorsOf("exp_avg_sq.", v1)...)
		return safetensors.Write(filepath.Join(dir, checkpoint.OptimizerFile), tensors, map[string]string{"step": strconv.Itoa(optStep)})
	}
	if at.Coord.DP != 0 {
		return nil
	}
	return checkpoint.WriteShard(dir, at.Coord, m, m1, v1, optStep)
}

// seal (rank 0, after every rank wrote its part) writes the indexes and
// states, checksums value/ and commits the checkpoint.
func (p *PPO) seal(run, tmp string, keep int, at PPOPlace, runState any) (string, error) {
	vdir := filepath.Join(tmp, PPOValueDir)
	if n := p.policy.ZeroShards(); n > 0 {
		if err := checkpoint.WriteZeroIndex(tmp, p.Step, at.Mesh, p.Policy.Config, n); err != nil {
			return "", err
		}
		if err := checkpoint.WriteZeroIndex(vdir, p.Step, at.Mesh, p.Value.GPT.Config, n); err != nil {
			return "", err
		}
	} else if at.Mesh.TP > 1 || at.Mesh.PP > 1 {
		if err := checkpoint.WriteIndex(tmp, p.Step, at.Mesh, p.Policy.Config); err != nil {
			return "", err
		}
		if err := checkpoint.WriteIndex(vdir, p.Step, at.Mesh, p.Value.GPT.Config); err != nil {
			return "", err
		}
	}
	vs := ppoValueState{Step: p.Step, Seed: p.Cfg.Seed, RewardHead: p.Value.Head}
	if err := checkpoint.WriteTrainerState(vdir, vs); err != nil {
		return "", err
	}
	sums, err := dirSums(vdir)
	if err != nil {
		return "", err
	}
	st := PPOState{Format: ppoFormat, Step: p.Step, Seed: p.Cfg.Seed, Layout: at.Mesh.String(), Config: p.Cfg,
		ValueHead:  ppoHeadMoments{M: p.optH.M, V: p.optH.V, Step: p.optH.Step},
		ValueFiles: sums}
	if runState != nil {
		if st.Run, err = json.Marshal(runState); err != nil {
			return "", fmt.Errorf("run state: %w", err)
		}
	}
	if err := checkpoint.WriteTrainerState(tmp, st); err != nil {
		return "", err
	}
	if p.CheckpointFiles != nil {
		if err := p.CheckpointFiles(tmp); err != nil {
			return "", err
		}
	}
	return checkpoint.Seal(run, tmp, p.Step, keep)
}

// dirSums returns the SHA-256 of every file in dir by name.
func dirSums(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
		out[e.Name()] = hex.EncodeToString(h.Sum(nil))
	}
	return out, nil
}

// Restore loads policy, value model and head with all three optimizers'
// moments and the step from the PPO checkpoint in dir, written under any
// DP x TP x PP layout, into this rank's models. Reference and
// reward model are left alone. It returns the checkpoint's state (Run holds
// the caller's).
func (p *PPO) Restore(dir string) (PPOState, error) {
	var st PPOState
	if err := checkpoint.LoadTrainerState(dir, &st); err != nil {
		return st, err
	}
	if st.Format != ppoFormat {
		return st, fmt.Errorf("checkpoint %s: not a PPO checkpoint (trainer state format %q, want %q)", dir, st.Format, ppoFormat)
	}
	vdir := filepath.Join(dir, PPOValueDir)
	sums, err := dirSums(vdir)
	if err != nil {
		return st, fmt.Errorf("checkpoint %s: value model: %w", dir, err)
	}
	for name, want := range st.ValueFiles {
		if sums[name] != want {
			return st, fmt.Errorf("checkpoint %s: %s: checksum mismatch (file missing, corrupted or truncated)", dir, filepath.Join(PPOValueDir, name))
		}
	}
	for _, pt := range []struct {
		dir string
		tr  *trainer.Trainer
	}{{dir, p.policy}, {vdir, p.value}} {
		if err := pt.tr.LoadWeights(pt.dir); err != nil {
			return st, err
		}
	}
	var vs ppoValueState
	if err := checkpoint.LoadTrainerState(vdir, &vs); err != nil {
		return st, err
	}
	if err := p.Value.SetHead(vs.RewardHead); err != nil {
		return st, fmt.Errorf("checkpoint %s: value head: %w", dir, err)
	}
	p.valueLoss.loadHead()
	h := st.ValueHead
	if len(h.M) != len(p.optH.M) || len(h.V) != len(p.optH.V) {
		return st, fmt.Errorf("checkpoint %s: value head moments of %d and %d values, want %d", dir, len(h.M), len(h.V), len(p.optH.M))
	}
	copy(p.optH.M, h.M)
	copy(p.optH.V, h.V)
	p.optH.Step = h.Step
	p.Step = st.Step
	return st, nil
}

// IsPPOCheckpoint reports whether the checkpoint in dir is a PPO
// checkpoint (its trainer_state.json has PPO's format).
func IsPPOCheckpoint(dir string) bool {
	var st struct {
		Format string `json:"format"`
	}
	return checkpoint.LoadTrainerState(dir, &st) == nil && st.Format == ppoFormat
}

// ReshardPPO rewrites the PPO checkpoint src for a tp x pp layout into the
// new checkpoint directory dst (which must not exist): the policy and its
// moments as checkpoint.Reshard does, value/ (value model, moments and
// head) resharded the same way, and trainer_state.json carried with the
// new layout and value/'s checksums recomputed, so PPO.Restore accepts it
// in any layout. value/ is checked against src's checksums first: a
// damaged value model is refused, not resharded. A LoRA policy (adapters
// only) is refused by checkpoint.ReshardFiles.
func ReshardPPO(src, dst string, tp, pp int) error {
	var st PPOState
	if err := checkpoint.LoadTrainerState(src, &st); err != nil {
		return fmt.Errorf("reshard ppo: %w", err)
	}
	if st.Format != ppoFormat {
		return fmt.Errorf("reshard ppo: %s is not a PPO checkpoint (trainer state format %q, want %q)", src, st.Format, ppoFormat)
	}
	svdir := filepath.Join(src, PPOValueDir)
	sums, err := dirSums(svdir)
	if err != nil {
		return fmt.Errorf("reshard ppo: %s: value model: %w", src, err)
	}
	if len(st.ValueFiles) == 0 {
		return fmt.Errorf("reshard ppo: %s: trainer state has no checksums of %s/", src, PPOValueDir)
	}
	for name, want := range st.ValueFiles {
		if sums[name] != want {
			return fmt.Errorf("reshard ppo: %s: checksum mismatch (file missing, corrupted or truncated)", filepath.Join(svdir, name))
		}
	}
	finish := func(tmp string) error {
		vdir := filepath.Join(tmp, PPOValueDir)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			return fmt.Errorf("reshard ppo: %w", err)
		}
		if _, err := checkpoint.ReshardFiles(svdir, vdir, tp, pp); err != nil {
			return fmt.Errorf("reshard ppo: value model: %w", err)
		}
		sums, err := dirSums(vdir)
		if err != nil {
			return fmt.Errorf("reshard ppo: value model: %w", err)
		}
		// The rest of the state is carried verbatim (the caller's Run
		// included); only the layout and value/'s checksums change.
		var raw map[string]json.RawMessage
		if err := checkpoint.LoadTrainerState(tmp, &raw); err != nil {
			return fmt.Errorf("reshard ppo: %w", err)
		}
		for k, v := range map[string]any{"value_sha256": sums, "layout": checkpoint.ReshardedLayout(tp, pp)} {
			if raw[k], err = json.Marshal(v); err != nil {
				return err
			}
		}
		return checkpoint.WriteTrainerState(tmp, raw)
	}
	return checkpoint.ReshardWith(src, dst, tp, pp, checkpoint.ReshardExtra{Subdirs: []string{PPOValueDir}, Finish: finish})
}
