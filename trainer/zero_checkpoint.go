package trainer

import (
	"context"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/internal/pages"
)

// zeroSnapshot is this rank's part of a ZeRO-2/3 checkpoint: its owned
// pieces of the parameters and moments (checkpoint.ZeroShard), copied
// when the save runs in the background.
func (t *Trainer) zeroSnapshot(copyBuffers bool) (*checkpoint.ZeroShard, error) {
	z := t.zero
	s := &checkpoint.ZeroShard{Coord: t.Comms.Coord, Rank: z.ShardComm().Rank(), Owned: z.Owned(),
		Params: z.Params(), M: t.Opt.M, V: t.Opt.V, OptStep: t.Opt.Step}
	s.Coord.DP = 0
	if !copyBuffers {
		return s, nil
	}
	// full length, resident only where owned
	params, err := pages.Alloc[float32](len(s.Params))
	if err != nil {
		return nil, err
	}
	for _, o := range s.Owned {
		copy(params[o[0]:o[1]], s.Params[o[0]:o[1]])
	}
	s.Params = params
	s.M, s.V = append([]float32(nil), s.M...), append([]float32(nil), s.V...)
	return s, nil
}

// writesZeroShard says this rank writes its pieces: the ranks of the first
// shard group (the others hold the same pieces).
func (t *Trainer) writesZeroShard() bool {
	return t.Comms.Coord.DP < t.zero.ShardComm().Size()
}

// restoreZero loads a checkpoint's parameters and moments into the owned
// pieces. A checkpoint this layout wrote (the same units over a shard
// group of the same size) is read piece by piece from this rank's files;
// any other is assembled tensor by tensor into the model's buffer first,
// which holds every parameter of this stage for the moment.
func (t *Trainer) restoreZero(dir string) (int, error) {
	if err := t.zero.ReleaseAll(); err != nil {
		return 0, err
	}
	if step, ok, err := t.restoreOwnPieces(dir); err != nil || ok {
		if err == nil {
			// ZeRO-2: every rank read its pieces; gather the rest
			err = t.zero.GatherParams(context.Background())
		}
		return step, err
	}
	m := t.Model
	if err := checkpoint.LoadModel(dir, m); err != nil {
		return 0, err
	}
	n := m.Params.Count()
	m1, v1 := make([]float32, n), make([]float32, n)
	step, err := checkpoint.LoadMoments(dir, m, m1, v1)
	if err != nil {
		return 0, err
	}
	t.Opt.Pack(t.Opt.M, m1)
	t.Opt.Pack(t.Opt.V, v1)
	if err := t.zero.Adopt(); err != nil {
		return 0, err
	}
	return step, nil
}

// restoreOwnPieces reads this rank's files of a ZeRO checkpoint when they
// hold exactly the pieces it owns; ok is false (and nothing changed) when
// they do not exist or were cut otherwise.
func (t *Trainer) restoreOwnPieces(dir string) (step int, ok bool, err error) {
	s, err := t.zeroSnapshot(false) // views of the state to fill
	if err != nil {
		return 0, false, err
	}
	return checkpoint.ReadZeroShard(dir, t.Model, *s)
}

// saveZeroShard writes this rank's pieces into the shared temporary
// directory (writer ranks only) and, on rank 0, nothing more: the index
// follows once every rank is done (snapshot.write).
func (t *Trainer) saveZeroShard(ctx context.Context, tmp string, s *checkpoint.ZeroShard) error {
	if !t.writesZeroShard() {
		return nil
	}
	return checkpoint.WriteZeroShard(tmp, t.Model, *s)
}

// ZeroShards is the number of files per pipeline stage and TP rank that a
// checkpoint of this trainer has under ZeRO-2/3 (the shard group's size),
// or 0 when its state is not sharded that way. Callers with their own
// checkpoint layout (PPO) write with WriteZeroPart and index with
// checkpoint.WriteZeroIndex.
func (t *Trainer) ZeroShards() int {
	if t.zero == nil {
		return 0
	}
	return t.zero.ShardComm().Size()
}

// WriteZeroPart writes this rank's pieces of the parameters and moments
// into dir (ranks of the first shard group; the others hold the same).
func (t *Trainer) WriteZeroPart(dir string) error {
	s, err := t.zeroSnapshot(false)
	if err != nil {
		return err
	}
	return t.saveZeroShard(context.Background(), dir, s)
}
