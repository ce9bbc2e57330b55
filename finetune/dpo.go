package finetune

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/strand-ml/strand/model"
)

// PairData is a preference dataset as rows: pair i is row 2i (prompt +
// chosen + EOS) and row 2i+1 (prompt + rejected + EOS), one sequence per
// row of Seq positions, padded with EOS; only completion and EOS targets
// count.
type PairData struct {
	Seq       int
	Pairs     int
	Inputs    []int32 // (2*Pairs, Seq)
	Targets   []int32 // (2*Pairs, Seq)
	Truncated int     // completions cut to fit Seq
	Lines     []int   // source line of each pair
}

// Rows is 2*Pairs.
func (d *PairData) Rows() int { return 2 * d.Pairs }

// EncodePairs renders preference records as PairData. A pair whose
// completion leaves no trained position within seq is an error naming
// its line (raise --seq or shorten the prompt).
func EncodePairs(enc Encoder, recs []Record, seq int) (*PairData, error) {
	if seq <= 0 {
		return nil, fmt.Errorf("pairs: sequence length %d must be positive", seq)
	}
	d := &PairData{Seq: seq}
	for _, r := range recs {
		for _, completion := range []string{r.Chosen, r.Rejected} {
			ex := enc.Completion(r.Line, r.Prompt, completion)
			in, tg := make([]int32, seq), make([]int32, seq)
			for i := range in {
				in[i], tg[i] = enc.EOS, ignoreIndex
			}
			if ex.Len() > seq {
				d.Truncated++
			}
			ex.Inputs(in, tg)
			trained := false
			for _, y := range tg {
				trained = trained || y != ignoreIndex
			}
			if !trained {
				return nil, fmt.Errorf("line %d: the prompt fills all %d positions; nothing of the completion is left", r.Line, seq)
			}
			d.Inputs = append(d.Inputs, in...)
			d.Targets = append(d.Targets, tg...)
		}
		d.Pairs++
		d.Lines = append(d.Lines, r.Line)
	}
	if d.Pairs == 0 {
		return nil, fmt.Errorf("pairs: no records")
	}
	return d, nil
}

// Slice is pairs [lo, hi) as their own PairData.
func (d *PairData) Slice(lo, hi int) *PairData {
	S := d.Seq
	return &PairData{Seq: S, Pairs: hi - lo, Inputs: d.Inputs[2*lo*S : 2*hi*S], Targets: d.Targets[2*lo*S : 2*hi*S], Lines: d.Lines[lo:hi]}
}

// rowLogProb is a row's summed log-probability of its counted targets:
// minus the sum of their losses.
func rowLogProb(targets []int32, losses []float32) float64 {
	var s float64
	for i, y := range targets {
		if y != ignoreIndex {
			s -= float64(losses[i])
		}
	}
	return s
}

// LogProbs returns the summed log-probability of every row of d under m
// (a whole single-process model), m.MaxB rows at a time.
func LogProbs(ctx context.Context, m *model.GPT, d *PairData) ([]float64, error) {
	if !m.Layout.First || !m.Layout.Last {
		return nil, fmt.Errorf("log-probs need the whole model on one rank")
	}
	if d.Seq > m.MaxT {
		return nil, fmt.Errorf("log-probs: rows of %d positions, the model holds %d", d.Seq, m.MaxT)
	}
	S, rows := d.Seq, d.Rows()
	a := m.NewActs(m.MaxB, S)
	out := make([]float64, 0, rows)
	for lo := 0; lo < rows; lo += m.MaxB {
		hi := min(rows, lo+m.MaxB)
		tg := d.Targets[lo*S : hi*S]
		if _, _, err := m.ForwardActs(ctx, a, d.Inputs[lo*S:hi*S], nil, tg, hi-lo, S); err != nil {
			return nil, fmt.Errorf("pair line %d: %w", d.Lines[lo/2], err)
		}
		losses := a.Losses()
		for r := 0; r < hi-lo; r++ {
			out = append(out, rowLogProb(tg[r*S:(r+1)*S], losses[r*S:(r+1)*S]))
		}
	}
	return out, nil
}

// DPOStats sums a step's DPO metrics on this rank (reduce them over the
// data-parallel and pipeline groups for the job's figures).
type DPOStats struct {
	Pairs, Correct               float64
	Margin                       float64 // sum of reward margins
	RewardChosen, RewardRejected float64 // sums of implicit rewards
}

// DPOBatches feeds DPO to the trainer: it is a trainer.Batches (pairs of
// rows for this data-parallel rank of each global batch) and a
// trainer.Objective (the DPO loss of those rows against the reference
// log-probs). Every rank builds it from the same data; Ref (the frozen
// reference's log-prob of every row) is needed only on last-stage ranks.
type DPOBatches struct {
	data  *PairData
	ref   []float64
	beta  float64
	cfg   BatchConfig
	next  int   // position of this step's first global pair in the pair stream
	cur   []int // dataset row of each of this step's rows
	perm  []int
	epoch int
	Stats DPOStats // this step's, reset by Next
}

// NewDPOBatches: cfg.Batch is rows per rank per step and must be even (a
// pair never straddles ranks or micro-batches when micro-batches are
// even too). ref may be nil on ranks that are not the last stage.
func NewDPOBatches(d *PairData, ref []float64, beta float64, cfg BatchConfig) (*DPOBatches, error) {
	if cfg.DPSize == 0 {
		cfg.DPSize = 1
	}
	switch {
	case d == nil || d.Pairs == 0:
		return nil, fmt.Errorf("dpo batches: no pairs")
	case cfg.Batch <= 0 || cfg.Batch%2 != 0:
		return nil, fmt.Errorf("dpo batches: %d rows per rank must be a positive even number (pairs of rows)", cfg.Batch)
	case cfg.DPRank < 0 || cfg.DPRank >= cfg.DPSize:
		return nil, fmt.Errorf("dpo batches: data-parallel rank %d outside 0..%d", cfg.DPRank, cfg.DPSize-1)
	case ref != nil && len(ref) != d.Rows():
		return nil, fmt.Errorf("dpo batches: %d reference log-probs for %d rows", len(ref), d.Rows())
	case !(beta > 0):
		return nil, fmt.Errorf("dpo: beta %g must be positive", beta)
	}
	return &DPOBatches{data: d, ref: ref, beta: beta, cfg: cfg, epoch: -1, cur: make([]int, cfg.Batch)}, nil
}

func (b *DPOBatches) pair(k int) int {
	n := b.data.Pairs
	if e := k / n; e != b.epoch {
		b.epoch = e
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

// Next fills this rank's rows of the next global batch of pairs.
func (b *DPOBatches) Next(inputs, targets []int32) error {
	S, rows := b.data.Seq, b.cfg.Batch
	if len(inputs) != rows*S || len(targets) != rows*S {
		return fmt.Errorf("dpo batches: buffers of %d/%d for %d rows of %d", len(inputs), len(targets), rows, S)
	}
	pairs := rows / 2
	fillPairRows(inputs, targets, b.data.Inputs, b.data.Targets, S, b.next+b.cfg.DPRank*pairs, b.pair, b.cur)
	b.next += pairs * b.cfg.DPSize
	b.Stats = DPOStats{}
	return nil
}

// Units is the number of pairs in this rank's rows.
func (b *DPOBatches) Units(targets []int32) int { return len(targets) / b.data.Seq / 2 }

// Forward computes the DPO loss of the micro-batch's pairs and the
// per-position weights d(summed loss)/d(token loss): a row's log-prob is
// minus the sum of its counted tokens' losses.
func (b *DPOBatches) Forward(row int, targets []int32, losses, weights []float32) (float64, error) {
	S := b.data.Seq
	rows := len(targets) / S
	if b.ref == nil {
		return 0, fmt.Errorf("dpo: no reference log-probs on this rank")
	}
	if row%2 != 0 || rows%2 != 0 {
		return 0, fmt.Errorf("dpo: micro-batch rows [%d, %d) split a pair", row, row+rows)
	}
	P := rows / 2
	pc, pr, rc, rr := make([]float64, P), make([]float64, P), make([]float64, P), make([]float64, P)
	for i := 0; i < P; i++ {
		c, r := 2*i, 2*i+1
		pc[i] = rowLogProb(targets[c*S:(c+1)*S], losses[c*S:(c+1)*S])
		pr[i] = rowLogProb(targets[r*S:(r+1)*S], losses[r*S:(r+1)*S])
		rc[i], rr[i] = b.ref[b.cur[row+c]], b.ref[b.cur[row+r]]
	}
	l, err := DPO(pc, pr, rc, rr, b.beta)
	if err != nil {
		return 0, err
	}
	for i := 0; i < P; i++ {
		// DPO's gradients carry the 1/P of its mean; the trainer divides
		// by the global pair count instead.
		wc, wr := float32(-l.DChosen[i]*float64(P)), float32(-l.DRejected[i]*float64(P))
		for side, w := range []float32{wc, wr} {
			r := 2*i + side
			for n := r * S; n < (r+1)*S; n++ {
				weights[n] = 0
				if targets[n] != ignoreIndex {
					weights[n] = w
				}
			}
		}
		b.Stats.Pairs++
		b.Stats.Margin += l.RewardChosen[i] - l.RewardRejected[i]
		b.Stats.RewardChosen += l.RewardChosen[i]
		b.Stats.RewardRejected += l.RewardRejected[i]
		if l.RewardChosen[i] > l.RewardRejected[i] {
			b.Stats.Correct++
		}
	}
	return l.Loss * float64(P), nil
}

// PairMargin is the mean over pairs of log pi(chosen) - log pi(rejected)
// from row log-probs (chosen, rejected alternating), and the fraction of
// pairs where it is positive.
func PairMargin(logps []float64) (margin, accuracy float64) {
	P := len(logps) / 2
	if P == 0 {
		return 0, 0
	}
	for i := 0; i < P; i++ {
		d := logps[2*i] - logps[2*i+1]
		margin += d
		if d > 0 {
			accuracy++
		}
	}
	return margin / float64(P), accuracy / float64(P)
}

// fillPairRows fills rows 2i and 2i+1 of inputs (and of targets, when
// srcTargets is not nil) with the chosen and rejected rows of pair
// pair(first+i) of the dataset, for every pair the buffers hold (rows of
// S tokens), and records in cur the dataset row each row came from. The
// pair data lays pair p out as rows 2p (chosen) and 2p+1 (rejected).
func fillPairRows(inputs, targets, srcInputs, srcTargets []int32, S, first int, pair func(int) int, cur []int) {
	for i := 0; i < len(inputs)/S/2; i++ {
		p := pair(first + i)
		for side := 0; side < 2; side++ {
			r, dst := 2*p+side, 2*i+side
			cur[dst] = r
			copy(inputs[dst*S:(dst+1)*S], srcInputs[r*S:(r+1)*S])
			if srcTargets != nil {
				copy(targets[dst*S:(dst+1)*S], srcTargets[r*S:(r+1)*S])
			}
		}
	}
}
