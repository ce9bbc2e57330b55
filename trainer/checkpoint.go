package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
)

// State is trainer_state.json: what an exact resume needs beyond weights
// and optimizer moments. The learning rate follows from Step.
type State struct {
	Step   int              `json:"step"`
	Seed   uint64           `json:"seed"`
	Loader data.LoaderState `json:"loader"`
	Layout string           `json:"layout"`
	// Head is a head objective's parameters and moments (SetHead); Save
	// fills it, Restore reads it.
	Head *HeadState `json:"head,omitempty"`
	// Extra are more top-level keys the caller records for readers of the
	// checkpoint (e.g. "reward_head" for strand rm score and ppo); they
	// must not collide with the fields above. Restore ignores them.
	Extra map[string]any `json:"-"`
}

// MarshalJSON writes the fields and the Extra keys as one object.
func (s State) MarshalJSON() ([]byte, error) {
	type plain State // without the method
	raw, err := json.Marshal(plain(s))
	if err != nil || len(s.Extra) == 0 {
		return raw, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	for k, v := range s.Extra {
		if _, dup := obj[k]; dup {
			return nil, fmt.Errorf("trainer state: extra key %q collides with a field", k)
		}
		if obj[k], err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("trainer state: extra key %q: %w", k, err)
		}
	}
	return json.Marshal(obj)
}

// Barrier synchronizes every rank of the job (worker.Runtime.Barrier);
// nil for a single process.
type Barrier func(ctx context.Context) error

// Moments returns the AdamW moments laid out like this rank's parameters.
// Under ZeRO-1 each data-parallel rank holds only its share, so the shares
// are all-gathered (every data-parallel rank must call this together).
// Under ZeRO-2/3 there is no such layout: write with WriteZeroPart.
func (t *Trainer) Moments(ctx context.Context) (m1, v1 []float32, err error) {
	n := t.Model.Params.Count()
	if t.Opt.Covers(n) {
		return t.Opt.M, t.Opt.V, nil
	}
	m1, v1 = make([]float32, n), make([]float32, n)
	t.Opt.Unpack(m1, t.Opt.M)
	t.Opt.Unpack(v1, t.Opt.V)
	if err := t.bucketer.GatherParams(ctx, m1); err != nil {
		return nil, nil, fmt.Errorf("gather optimizer state: %w", err)
	}
	if err := t.bucketer.GatherParams(ctx, v1); err != nil {
		return nil, nil, fmt.Errorf("gather optimizer state: %w", err)
	}
	return m1, v1, nil
}

// Save writes a checkpoint of step t.Step under run/checkpoints, keeping
// the newest keep. Every rank calls it. A single-stage model without tensor
// parallelism is written as one Hugging Face style model.safetensors by
// rank 0; otherwise every dp=0 rank writes its shards into a shared
// temporary directory and rank 0 writes the index and seals the checkpoint
// once every rank has passed the barrier — a checkpoint whose writing
// failed anywhere is never committed.
func (t *Trainer) Save(ctx context.Context, run string, keep int, rank int, barrier Barrier, st State) (string, error) {
	snap, err := t.snapshot(ctx, false)
	if err != nil {
		return "", err
	}
	return snap.write(ctx, run, keep, rank, barrier, st)
}

// SaveAsync snapshots the state in memory (the only part that waits) and
// writes the checkpoint in the background while training continues. The
// returned wait function reports the outcome; call it before the next save
// and before exiting. Every rank calls SaveAsync at the same step.
func (t *Trainer) SaveAsync(ctx context.Context, run string, keep int, rank int, barrier Barrier, st State) (wait func() (string, error)) {
	snap, err := t.snapshot(ctx, true)
	if err != nil {
		return func() (string, error) { return "", err }
	}
	type result struct {
		path string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, err := snap.write(ctx, run, keep, rank, barrier, st)
		done <- result{p, err}
	}()
	return func() (string, error) {
		r := <-done
		return r.path, r.err
	}
}

// snapshot is the state one checkpoint writes.
type snapshot struct {
	t      *Trainer
	model  *model.GPT
	m1, v1 []float32
	step   int
	opt    int
	loader data.LoaderState
	head   *HeadState
	zero   *checkpoint.ZeroShard // ZeRO-2/3: this rank's pieces instead of model, m1, v1
}

// snapshot captures weights, moments and data position; with copy the
// buffers are copied so training may continue.
func (t *Trainer) snapshot(ctx context.Context, copyBuffers bool) (*snapshot, error) {
	if t.zero != nil {
		z, err := t.zeroSnapshot(copyBuffers)
		if err != nil {
			return nil, err
		}
		s := &snapshot{t: t, model: t.Model, zero: z, step: t.Step, opt: t.Opt.Step, head: t.headState()}
		if t.Loader != nil {
			s.loader = t.Loader.State()
		}
		return s, nil
	}
	m1, v1, err := t.Moments(ctx)
	if err != nil {
		return nil, err
	}
	s := &snapshot{t: t, model: t.Model, m1: m1, v1: v1, step: t.Step, opt: t.Opt.Step, head: t.headState()}
	if t.Loader != nil {
		s.loader = t.Loader.State()
	}
	if copyBuffers {
		s.model = t.Model.Snapshot()
		s.m1, s.v1 = append([]float32(nil), m1...), append([]float32(nil), v1...)
	}
	return s, nil
}

func (s *snapshot) write(ctx context.Context, run string, keep int, rank int, barrier Barrier, st State) (string, error) {
	t := s.t
	st.Step, st.Loader, st.Layout, st.Head = s.step, s.loader, t.Comms.Mesh.String(), s.head
	layout := t.Comms.Mesh
	m1, v1 := s.m1, s.v1
	var err error
	sync := func() error {
		if barrier == nil {
			return nil
		}
		return barrier(ctx)
	}
	if layout.TP == 1 && layout.PP == 1 && s.zero == nil {
		var path string
		if rank == 0 {
			opt := optim.AdamW{M: m1, V: v1, Step: s.opt}
			if path, err = checkpoint.SaveWith(run, s.step, s.model, &opt, st, keep, t.CheckpointFiles); err != nil {
				return "", err
			}
		}
		return path, sync()
	}
	tmp := checkpoint.TempDir(run, s.step)
	if rank == 0 {
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return "", fmt.Errorf("checkpoint: %w", err)
		}
	}
	if err := sync(); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", s.step, err)
	}
	if s.zero != nil {
		if err := t.saveZeroShard(ctx, tmp, s.zero); err != nil {
			return "", fmt.Errorf("checkpoint step %d: %w", s.step, err)
		}
	} else if t.Comms.Coord.DP == 0 {
		if err := checkpoint.WriteShard(tmp, t.Comms.Coord, s.model, m1, v1, s.opt); err != nil {
			return "", fmt.Errorf("checkpoint step %d: %w", s.step, err)
		}
	}
	if err := sync(); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", s.step, err)
	}
	var path string
	if rank == 0 {
		write := checkpoint.WriteIndex
		if s.zero != nil {
			shards := t.zero.ShardComm().Size()
			write = func(dir string, step int, l mesh.Mesh, cfg model.Config) error {
				return checkpoint.WriteZeroIndex(dir, step, l, cfg, shards)
			}
		}
		if err := write(tmp, s.step, layout, t.Opts.Model); err != nil {
			return "", err
		}
		if err := checkpoint.WriteTrainerState(tmp, st); err != nil {
			return "", err
		}
		if t.CheckpointFiles != nil {
			if err := t.CheckpointFiles(tmp); err != nil {
				return "", fmt.Errorf("checkpoint step %d: %w", s.step, err)
			}
		}
		if path, err = checkpoint.Seal(run, tmp, s.step, keep); err != nil {
			return "", err
		}
	}
	return path, sync()
}

// Restore loads weights, optimizer moments, step and data position from the
// checkpoint in dir, written under any layout, and the head objective's
// state when SetHead installed one. A Source set before Restore is moved
// to the batch of the restored step: directly when it is a Seeker,
// otherwise by reading and discarding one batch per step taken (the
// fine-tuning sources are deterministic in the step).
func (t *Trainer) Restore(dir string) (State, error) {
	var st State
	if err := checkpoint.LoadTrainerState(dir, &st); err != nil {
		return st, err
	}
	if err := t.LoadWeights(dir); err != nil {
		return st, err
	}
	return t.restoreRest(dir, st)
}

// LoadWeights loads the parameters, the AdamW moments and the optimizer's
// step from the checkpoint in dir (any layout, any ZeRO stage) into this
// rank's share of them. Restore calls it; so do objectives with their own
// checkpoint directories (PPO).
func (t *Trainer) LoadWeights(dir string) error {
	if t.zero != nil {
		step, err := t.restoreZero(dir)
		if err != nil {
			return err
		}
		t.Opt.Step = step
		return nil
	}
	if err := checkpoint.LoadModel(dir, t.Model); err != nil {
		return err
	}
	n := t.Model.Params.Count()
	m1, v1 := make([]float32, n), make([]float32, n)
	step, err := checkpoint.LoadMoments(dir, t.Model, m1, v1)
	if err != nil {
		return err
	}
	t.Opt.Pack(t.Opt.M, m1)
	t.Opt.Pack(t.Opt.V, v1)
	t.Opt.Step = step
	t.Model.SyncPrecision()
	return nil
}

// restoreRest restores what follows the weights and moments: the head
// objective, the data position and the step. The reduced-precision copy
// of the weights follows the loaded ones (an evaluation may come before
// any step).
func (t *Trainer) restoreRest(dir string, st State) (State, error) {
	t.Model.SyncPrecision()
	if err := t.restoreHead(dir, st.Head); err != nil {
		return st, err
	}
	if t.Source != nil {
		if err := t.seekSource(st.Step); err != nil {
			return st, fmt.Errorf("checkpoint %s: data position: %w", dir, err)
		}
	} else if t.Loader != nil {
		if err := t.Loader.Restore(st.Loader); err != nil {
			return st, fmt.Errorf("checkpoint %s: data position: %w", dir, err)
		}
	}
	t.Step = st.Step
	return st, nil
}

// Seeker is implemented by a Source that can move straight to the batch
// of a given step (the batch the step+1-th TrainStep reads).
type Seeker interface {
	SeekStep(step int) error
}

// seekSource positions a fresh Source at step.
func (t *Trainer) seekSource(step int) error {
	if s, ok := t.Source.(Seeker); ok {
		return s.SeekStep(step)
	}
	for i := 0; i < step; i++ {
		if err := t.Source.Next(t.inputs, t.targets); err != nil {
			return fmt.Errorf("skipping batch %d of %d: %w", i+1, step, err)
		}
	}
	return nil
}
