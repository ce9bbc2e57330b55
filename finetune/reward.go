package finetune

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
)

// RewardRows are completions as rows for a reward model: prompt +
// completion + EOS, padded with EOS to Seq, with the position of the
// closing EOS (Last) where the reward is read. Pairs are rows 2i (chosen)
// and 2i+1 (rejected).
type RewardRows struct {
	Seq       int
	Rows      int
	Inputs    []int32 // (Rows, Seq)
	Last      []int   // (Rows) position of the closing EOS, or Seq-1 when cut
	Lines     []int   // (Rows) source line
	Truncated int
}

// EncodeRewardPairs renders preference records as chosen/rejected rows.
func EncodeRewardPairs(enc Encoder, recs []Record, seq int) (*RewardRows, error) {
	if seq <= 0 {
		return nil, fmt.Errorf("reward rows: sequence length %d must be positive", seq)
	}
	d := &RewardRows{Seq: seq}
	for _, r := range recs {
		for _, c := range []string{r.Chosen, r.Rejected} {
			d.add(enc.Completion(r.Line, r.Prompt, c), enc.EOS)
		}
	}
	if d.Rows == 0 {
		return nil, fmt.Errorf("reward rows: no records")
	}
	return d, nil
}

func (d *RewardRows) add(ex Example, pad int32) {
	row := make([]int32, d.Seq)
	for i := range row {
		row[i] = pad
	}
	n := copy(row, ex.Tokens)
	if len(ex.Tokens) > d.Seq {
		d.Truncated++
	}
	d.Inputs = append(d.Inputs, row...)
	d.Last = append(d.Last, n-1)
	d.Lines = append(d.Lines, ex.Line)
	d.Rows++
}

// Slice is rows [lo, hi) as their own RewardRows.
func (d *RewardRows) Slice(lo, hi int) *RewardRows {
	return &RewardRows{Seq: d.Seq, Rows: hi - lo, Inputs: d.Inputs[lo*d.Seq : hi*d.Seq], Last: d.Last[lo:hi], Lines: d.Lines[lo:hi]}
}

// RewardHead is the scalar head r = Weight . h + Bias on the final hidden
// state h (after ln_f) of a sequence's closing EOS. It is saved in the
// checkpoint's trainer_state.json.
type RewardHead struct {
	Weight []float32 `json:"weight"` // (C)
	Bias   float32   `json:"bias"`
}

// RewardModel is a GPT (whole, one process) with a RewardHead.
type RewardModel struct {
	GPT  *model.GPT
	Head RewardHead
	acts *model.Acts
	// gradients of the head, accumulated by Backward
	dHead []float32 // (C+1): weight, then bias
	dHid  []float32 // (B*T, C) scratch: gradient on the hidden states
}

// NewRewardModel wraps m with a head drawn from seed (std 1/sqrt(C)).
func NewRewardModel(m *model.GPT, seed uint64) (*RewardModel, error) {
	if !m.Layout.First || !m.Layout.Last {
		return nil, fmt.Errorf("reward model: needs the whole model in one process")
	}
	C := m.Config.NEmbd
	h := NewRewardHead(C, seed)
	return &RewardModel{GPT: m, Head: h, acts: m.NewActs(m.MaxB, m.MaxT), dHead: make([]float32, C+1),
		dHid: make([]float32, m.MaxB*m.MaxT*C)}, nil
}

// NewRewardHead draws a head of width C from seed (weights with std
// 1/sqrt(C), bias 0): the same head NewRewardModel and NewRewardBatches
// start from.
func NewRewardHead(C int, seed uint64) RewardHead {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	h := RewardHead{Weight: make([]float32, C)}
	for i := range h.Weight {
		h.Weight[i] = float32(r.NormFloat64() / math.Sqrt(float64(C)))
	}
	return h
}

// SetHead replaces the head (from a checkpoint).
func (rm *RewardModel) SetHead(h RewardHead) error {
	if len(h.Weight) != rm.GPT.Config.NEmbd {
		return fmt.Errorf("reward head of width %d for a model of width %d", len(h.Weight), rm.GPT.Config.NEmbd)
	}
	rm.Head = RewardHead{Weight: append([]float32(nil), h.Weight...), Bias: h.Bias}
	return nil
}

// errStageRewardModel: NewStageRewardModel's models run only inside PPO,
// which holds their activations (one per micro-batch).
var errStageRewardModel = errors.New("reward model: built by NewStageRewardModel for PPO; score with NewRewardModel")

// Rewards runs rows [lo, hi) of d (at most MaxB) and returns their rewards.
func (rm *RewardModel) Rewards(ctx context.Context, d *RewardRows, lo, hi int) ([]float64, error) {
	B, T, C := hi-lo, d.Seq, rm.GPT.Config.NEmbd
	if rm.acts == nil {
		return nil, errStageRewardModel
	}
	if _, _, err := rm.GPT.ForwardActs(ctx, rm.acts, d.Inputs[lo*T:hi*T], nil, nil, B, T); err != nil {
		return nil, fmt.Errorf("reward rows %d-%d (line %d): %w", lo, hi, d.Lines[lo], err)
	}
	hid := rm.acts.Hidden()
	out := make([]float64, B)
	for b := 0; b < B; b++ {
		h := hid[(b*T+d.Last[lo+b])*C:][:C]
		s := float64(rm.Head.Bias)
		for i, w := range rm.Head.Weight {
			s += float64(w) * float64(h[i])
		}
		out[b] = s
	}
	return out, nil
}

// Backward accumulates the gradients of a loss whose derivatives with
// respect to the rewards of the last Rewards call are dr.
func (rm *RewardModel) Backward(ctx context.Context, d *RewardRows, lo int, dr []float64) error {
	B, T, C := len(dr), d.Seq, rm.GPT.Config.NEmbd
	if rm.acts == nil {
		return errStageRewardModel
	}
	hid := rm.acts.Hidden()
	dh := rm.dHid[:B*T*C]
	clear(dh)
	for b, g := range dr {
		n := b*T + d.Last[lo+b]
		h := hid[n*C:][:C]
		for i, w := range rm.Head.Weight {
			rm.dHead[i] += float32(g) * h[i]
			dh[n*C+i] = float32(g) * w
		}
		rm.dHead[C] += float32(g)
	}
	rm.acts.SetHeadGrad(dh)
	return rm.GPT.BackwardActs(ctx, rm.acts, nil, 1)
}

// RewardTrainer trains a RewardModel on pairs with the Bradley-Terry loss
// and AdamW (model and head), one process.
type RewardTrainer struct {
	RM       *RewardModel
	Sched    optim.Schedule
	GradClip float64
	Step     int
	// DP, when set, is the data-parallel group: each rank takes its
	// contiguous share of every step's pairs and gradients are summed
	// across the group, so every rank takes the same step.
	DP      *collective.Comm
	opt     *optim.AdamW
	headOpt *optim.AdamW
	head    []float32 // (C+1) head parameters as one vector for AdamW
}

// NewRewardTrainer prepares AdamW states (weight decay on matrices only,
// as the pre-training trainer does).
func NewRewardTrainer(rm *RewardModel, cfg optim.AdamWConfig, sched optim.Schedule, clip float64) (*RewardTrainer, error) {
	var segs []optim.Segment
	for _, p := range rm.GPT.Params.List {
		segs = append(segs, optim.Segment{Offset: p.Offset, Size: p.Size(), Decay: p.Decay})
	}
	opt, err := optim.NewAdamW(cfg, rm.GPT.Params.Count(), segs)
	if err != nil {
		return nil, err
	}
	C := rm.GPT.Config.NEmbd
	headOpt, err := optim.NewAdamW(cfg, C+1, []optim.Segment{{Offset: 0, Size: C + 1}})
	if err != nil {
		return nil, err
	}
	if err := sched.Validate(); err != nil {
		return nil, err
	}
	return &RewardTrainer{RM: rm, Sched: sched, GradClip: clip, opt: opt, headOpt: headOpt, head: make([]float32, C+1)}, nil
}

// TrainStep takes one optimizer step on the pairs with the given indices
// (pair i is rows 2i, 2i+1 of d; with DP, the global batch, of which this
// rank takes its share), in micro-batches of up to MaxB rows.
func (t *RewardTrainer) TrainStep(ctx context.Context, d *RewardRows, pairs []int) (loss, acc float64, err error) {
	rm := t.RM
	rm.GPT.Params.ZeroGrad()
	clear(rm.dHead)
	global := len(pairs)
	if t.DP.Size() > 1 {
		n := t.DP.Size()
		if global%n != 0 {
			return 0, 0, fmt.Errorf("reward model: %d pairs per step do not split over %d data-parallel ranks", global, n)
		}
		k := global / n
		pairs = pairs[t.DP.Rank()*k : (t.DP.Rank()+1)*k]
	}
	perMicro := max(1, rm.GPT.MaxB/2)
	sub := &RewardRows{Seq: d.Seq}
	for lo := 0; lo < len(pairs); lo += perMicro {
		hi := min(len(pairs), lo+perMicro)
		// gather the micro-batch's rows
		sub.Rows, sub.Inputs, sub.Last, sub.Lines = 0, sub.Inputs[:0], sub.Last[:0], sub.Lines[:0]
		for _, p := range pairs[lo:hi] {
			for side := 0; side < 2; side++ {
				r := 2*p + side
				sub.Inputs = append(sub.Inputs, d.Inputs[r*d.Seq:(r+1)*d.Seq]...)
				sub.Last = append(sub.Last, d.Last[r])
				sub.Lines = append(sub.Lines, d.Lines[r])
				sub.Rows++
			}
		}
		rw, err := rm.Rewards(ctx, sub, 0, sub.Rows)
		if err != nil {
			return 0, 0, err
		}
		var rc, rr []float64
		for i := 0; i < hi-lo; i++ {
			rc, rr = append(rc, rw[2*i]), append(rr, rw[2*i+1])
		}
		l, err := BradleyTerry(rc, rr)
		if err != nil {
			return 0, 0, err
		}
		// BradleyTerry's gradients are of the micro-batch mean; rescale to
		// the mean over the step's pairs.
		frac := float64(hi-lo) / float64(global)
		dr := make([]float64, 2*(hi-lo))
		for i := range rc {
			dr[2*i], dr[2*i+1] = l.DChosen[i]*frac, l.DRejected[i]*frac
		}
		if err := rm.Backward(ctx, sub, 0, dr); err != nil {
			return 0, 0, err
		}
		loss += l.Loss * frac
		acc += l.Accuracy * frac
	}
	if t.DP.Size() > 1 {
		stats := []float32{float32(loss), float32(acc)}
		for _, buf := range [][]float32{rm.GPT.Params.Grad, rm.dHead, stats} {
			if err := t.DP.AllReduce(ctx, collective.F32(buf), collective.Sum); err != nil {
				return 0, 0, fmt.Errorf("reward model gradient all-reduce: %w", err)
			}
		}
		loss, acc = float64(stats[0]), float64(stats[1])
	}
	norm := math.Sqrt(rm.GPT.Params.NormSumSquares() + optim.SumSquares(rm.dHead))
	clip := optim.ClipScale(norm, t.GradClip)
	optim.Scale(rm.GPT.Params.Grad, clip)
	optim.Scale(rm.dHead, clip)
	lr := t.Sched.At(t.Step)
	t.opt.Update(rm.GPT.Params.Data, rm.GPT.Params.Grad, lr)
	C := len(rm.Head.Weight)
	copy(t.head, rm.Head.Weight)
	t.head[C] = rm.Head.Bias
	t.headOpt.Update(t.head, rm.dHead, lr)
	copy(rm.Head.Weight, t.head[:C])
	rm.Head.Bias = t.head[C]
	t.Step++
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, acc, fmt.Errorf("reward model loss is %v (diverged; lower --lr?)", loss)
	}
	return loss, acc, nil
}

// PairAccuracy scores every pair of d and returns the fraction with the
// chosen reward above the rejected one, and all rewards (row order).
func (rm *RewardModel) PairAccuracy(ctx context.Context, d *RewardRows) (float64, []float64, error) {
	var all []float64
	step := max(2, rm.GPT.MaxB/2*2)
	for lo := 0; lo < d.Rows; lo += step {
		r, err := rm.Rewards(ctx, d, lo, min(d.Rows, lo+step))
		if err != nil {
			return 0, nil, err
		}
		all = append(all, r...)
	}
	P := d.Rows / 2
	if P == 0 {
		return 0, all, fmt.Errorf("pair accuracy: no pairs")
	}
	var hits float64
	for i := 0; i < P; i++ {
		if all[2*i] > all[2*i+1] {
			hits++
		}
	}
	return hits / float64(P), all, nil
}
