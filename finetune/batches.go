package finetune

import (
	"fmt"
	"math/rand/v2"
)

// BatchConfig is one data-parallel rank's view of a Packed dataset.
type BatchConfig struct {
	Batch   int    // rows per step for THIS rank
	DPRank  int    // this rank's index in the data-parallel group
	DPSize  int    // data-parallel group size (0 means 1)
	Shuffle bool   // permute the rows each epoch
	Seed    uint64 // shuffle seed; every rank must use the same one
}

// Batches yields each step's rows for one data-parallel rank: global batch
// g is rows [g*Batch*DPSize, (g+1)*Batch*DPSize) of an endless stream of
// epochs, and rank r takes its r-th slice of Batch rows. It implements
// trainer.Batches and trainer.Segmented.
type Batches struct {
	data   *Packed
	cfg    BatchConfig
	next   int // position in the row stream of this step's first global row
	perm   []int
	epoch  int
	segs   []int32
	Epochs int // epochs started so far (for logs)
}

// NewBatches checks cfg against p.
func NewBatches(p *Packed, cfg BatchConfig) (*Batches, error) {
	if cfg.DPSize == 0 {
		cfg.DPSize = 1
	}
	switch {
	case p == nil || p.Rows == 0:
		return nil, fmt.Errorf("batches: no rows")
	case cfg.Batch <= 0:
		return nil, fmt.Errorf("batches: %d rows per rank must be positive", cfg.Batch)
	case cfg.DPRank < 0 || cfg.DPRank >= cfg.DPSize:
		return nil, fmt.Errorf("batches: data-parallel rank %d outside 0..%d", cfg.DPRank, cfg.DPSize-1)
	}
	b := &Batches{data: p, cfg: cfg, epoch: -1, segs: make([]int32, cfg.Batch*p.Seq)}
	return b, nil
}

// row is the dataset row at position k of the stream.
func (b *Batches) row(k int) int {
	n := b.data.Rows
	if e := k / n; e != b.epoch {
		b.epoch = e
		b.Epochs = max(b.Epochs, e+1)
		b.perm = b.perm[:0]
		for i := 0; i < n; i++ {
			b.perm = append(b.perm, i)
		}
		if b.cfg.Shuffle {
			r := rand.New(rand.NewPCG(b.cfg.Seed, uint64(e)))
			r.Shuffle(n, func(i, j int) { b.perm[i], b.perm[j] = b.perm[j], b.perm[i] })
		}
	}
	return b.perm[k%n]
}

// Next fills inputs and targets (Batch x Seq) with this rank's rows of the
// next global batch.
func (b *Batches) Next(inputs, targets []int32) error {
	S := b.data.Seq
	if len(inputs) != b.cfg.Batch*S || len(targets) != len(inputs) {
		return fmt.Errorf("batches: buffers of %d/%d for %d rows of %d", len(inputs), len(targets), b.cfg.Batch, S)
	}
	first := b.next + b.cfg.DPRank*b.cfg.Batch
	for i := 0; i < b.cfg.Batch; i++ {
		r := b.row(first + i)
		copy(inputs[i*S:(i+1)*S], b.data.Inputs[r*S:(r+1)*S])
		copy(targets[i*S:(i+1)*S], b.data.Targets[r*S:(r+1)*S])
		copy(b.segs[i*S:(i+1)*S], b.data.Segments[r*S:(r+1)*S])
	}
	b.next += b.cfg.Batch * b.cfg.DPSize
	return nil
}

// Segments are the segment ids of the rows of the last Next.
func (b *Batches) Segments() []int32 { return b.segs }
