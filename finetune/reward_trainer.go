package finetune

import (
	"fmt"
	"math/rand/v2"
)

// RewardStats sums a step's reward-model metrics on this rank (reduce them
// over the data-parallel and pipeline groups for the job's figures; only
// last-stage ranks count).
type RewardStats struct {
	Pairs, Correct float64
	Loss           float64 // summed Bradley-Terry loss
}

// RewardBatches feeds reward-model training to trainer.Trainer on any
// DP x TP x PP mesh. It is a trainer.Batches (this data-parallel rank's
// pairs of each global batch: row 2i chosen, row 2i+1 rejected) and a
// trainer.HeadObjective: on the last stage it reads the scalar head
// r = w . h + b on the final hidden state h of each row's closing EOS,
// and returns the summed Bradley-Terry loss with its gradients on the
// hidden states and on (w, b). The trainer owns the head's updates,
// reductions and checkpointing (trainer.Trainer.SetHead); every rank
// builds it from the same data and seed.
type RewardBatches struct {
	data  *RewardRows
	cfg   BatchConfig
	next  int        // position of this step's first global pair in the pair stream
	cur   []int      // dataset row of each of this step's rows
	perm  []int      // this epoch's pair order
	epoch int        // epoch of perm (-1: none drawn)
	rng   *rand.Rand // draws one permutation per epoch
	C     int
	head  []float32   // (C+1): weight, then bias
	grad  []float32   // (C+1)
	Stats RewardStats // this step's, reset by Next
}

// NewRewardBatches: cfg.Batch is rows per rank per step and must be even
// (with even micro-batches a pair never straddles ranks or micro-batches);
// the head of width C starts as NewRewardHead(C, seed).
func NewRewardBatches(d *RewardRows, C int, seed uint64, cfg BatchConfig) (*RewardBatches, error) {
	if cfg.DPSize == 0 {
		cfg.DPSize = 1
	}
	switch {
	case d == nil || d.Rows < 2 || d.Rows%2 != 0:
		return nil, fmt.Errorf("reward batches: need pairs of rows")
	case cfg.Batch <= 0 || cfg.Batch%2 != 0:
		return nil, fmt.Errorf("reward batches: %d rows per rank must be a positive even number (pairs of rows)", cfg.Batch)
	case cfg.DPRank < 0 || cfg.DPRank >= cfg.DPSize:
		return nil, fmt.Errorf("reward batches: data-parallel rank %d outside 0..%d", cfg.DPRank, cfg.DPSize-1)
	case C <= 0:
		return nil, fmt.Errorf("reward batches: head width %d must be positive", C)
	}
	b := &RewardBatches{data: d, cfg: cfg, epoch: -1, cur: make([]int, cfg.Batch), C: C,
		head: make([]float32, C+1), grad: make([]float32, C+1)}
	if err := b.SetHead(NewRewardHead(C, seed)); err != nil {
		return nil, err
	}
	return b, nil
}

// Head is a copy of the current head (for the checkpoint and RewardModel).
func (b *RewardBatches) Head() RewardHead {
	return RewardHead{Weight: append([]float32(nil), b.head[:b.C]...), Bias: b.head[b.C]}
}

// SetHead replaces the head (e.g. from a reward-model checkpoint).
func (b *RewardBatches) SetHead(h RewardHead) error {
	if len(h.Weight) != b.C {
		return fmt.Errorf("reward head of width %d for a model of width %d", len(h.Weight), b.C)
	}
	copy(b.head, h.Weight)
	b.head[b.C] = h.Bias
	return nil
}

// pair is the dataset pair at position k of the stream. Epoch e's order is
// the e-th permutation drawn from one PCG(seed, 1) stream (the pair order
// strand rm train has used since its first version, so a seed gives the
// same run as before the reward model moved onto the trainer).
func (b *RewardBatches) pair(k int) int {
	n := b.data.Rows / 2
	e := k / n
	if e < b.epoch || b.rng == nil {
		b.rng, b.epoch = rand.New(rand.NewPCG(b.cfg.Seed, 1)), -1
	}
	for b.epoch < e {
		b.perm = b.rng.Perm(n)
		b.epoch++
		if !b.cfg.Shuffle {
			for i := range b.perm {
				b.perm[i] = i
			}
		}
	}
	return b.perm[k%n]
}

// Next fills this rank's rows of the next global batch of pairs. Targets
// are all ignored: the head objective's loss replaces the LM loss.
func (b *RewardBatches) Next(inputs, targets []int32) error {
	S, rows := b.data.Seq, b.cfg.Batch
	if len(inputs) != rows*S || len(targets) != rows*S {
		return fmt.Errorf("reward batches: buffers of %d/%d for %d rows of %d", len(inputs), len(targets), rows, S)
	}
	pairs := rows / 2
	fillPairRows(inputs, targets, b.data.Inputs, nil, S, b.next+b.cfg.DPRank*pairs, b.pair, b.cur)
	for i := range targets {
		targets[i] = ignoreIndex
	}
	b.next += pairs * b.cfg.DPSize
	b.Stats = RewardStats{}
	return nil
}

// SeekStep moves to the global batch of step (trainer.Seeker, for resume).
func (b *RewardBatches) SeekStep(step int) error {
	if step < 0 {
		return fmt.Errorf("reward batches: step %d", step)
	}
	b.next = step * b.cfg.Batch / 2 * b.cfg.DPSize
	return nil
}

// Units is the number of pairs in this rank's rows.
func (b *RewardBatches) Units(targets []int32) int { return len(targets) / b.data.Seq / 2 }

// HeadParams are the head (weight, then bias) and its gradient.
func (b *RewardBatches) HeadParams() ([]float32, []float32) { return b.head, b.grad }

// HeadForward scores the micro-batch's rows at their closing EOS and
// returns the summed Bradley-Terry loss of its pairs; it fills dHidden at
// those positions and adds the head's gradient.
func (b *RewardBatches) HeadForward(row int, hidden, dHidden []float32) (float64, error) {
	S, C := b.data.Seq, b.C
	if len(hidden)%(S*C) != 0 || len(dHidden) != len(hidden) {
		return 0, fmt.Errorf("reward head: hidden states of %d values (gradient %d) for rows of %d x %d", len(hidden), len(dHidden), S, C)
	}
	rows := len(hidden) / (S * C)
	if row%2 != 0 || rows%2 != 0 || row+rows > len(b.cur) {
		return 0, fmt.Errorf("reward head: micro-batch rows [%d, %d) split a pair or leave the step's %d rows", row, row+rows, len(b.cur))
	}
	w := b.head[:C]
	// position of each row's reward in hidden, and the reward
	pos := make([]int, rows)
	r := make([]float64, rows)
	for i := range r {
		pos[i] = (i*S + b.data.Last[b.cur[row+i]]) * C
		h := hidden[pos[i] : pos[i]+C]
		s := float64(b.head[C])
		for k, wk := range w {
			s += float64(wk) * float64(h[k])
		}
		r[i] = s
	}
	P := rows / 2
	rc, rr := make([]float64, P), make([]float64, P)
	for i := 0; i < P; i++ {
		rc[i], rr[i] = r[2*i], r[2*i+1]
	}
	l, err := BradleyTerry(rc, rr)
	if err != nil {
		return 0, err
	}
	for i := 0; i < rows; i++ {
		// BradleyTerry's gradients carry the 1/P of its mean; the trainer
		// divides by the global pair count instead.
		g := l.DChosen[i/2]
		if i%2 == 1 {
			g = l.DRejected[i/2]
		}
		g32 := float32(g * float64(P))
		h := hidden[pos[i] : pos[i]+C]
		dh := dHidden[pos[i] : pos[i]+C]
		for k, wk := range w {
			b.grad[k] += g32 * h[k]
			dh[k] = g32 * wk
		}
		b.grad[C] += g32
	}
	b.Stats.Pairs += float64(P)
	b.Stats.Correct += l.Accuracy * float64(P)
	b.Stats.Loss += l.Loss * float64(P)
	return l.Loss * float64(P), nil
}
