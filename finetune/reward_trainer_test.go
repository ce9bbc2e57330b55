package finetune

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/tokenizer"
	"github.com/strand-ml/strand/trainer"
)

func rewardTestRows(t *testing.T, n, seq int) *RewardRows {
	t.Helper()
	var recs []Record
	for i := 0; i < n; i++ {
		s := fmt.Sprintf("%c%c%c", 'a'+i%5, 'a'+(i/5)%5, 'a'+(i*7)%5)
		rev := string([]byte{s[2], s[1], s[0]})
		recs = append(recs, Record{Line: i + 1, Prompt: s + "=", Chosen: rev, Rejected: s + s[:i%3]})
	}
	d, err := EncodeRewardPairs(Encoder{Tok: tokenizer.Bytes{}, EOS: 0}, recs, seq)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRewardBatchesOnTrainerMatchRewardTrainer: the reward model trained by
// trainer.Trainer through RewardBatches (the head objective) takes the same
// steps as the one-process RewardTrainer on the same pairs: losses within
// 1e-5 relative, and the same head.
func TestRewardBatchesOnTrainerMatchRewardTrainer(t *testing.T) {
	const seq, pairs, steps = 12, 4, 5
	cfg := model.Config{VocabSize: 256, NLayer: 2, NHead: 2, NEmbd: 16, NPositions: seq, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.02}
	d := rewardTestRows(t, 12, seq)
	adam := optim.DefaultAdamW()
	opts := trainer.Options{Model: cfg, Batch: 2 * pairs, Seq: seq, Micro: 2, Steps: steps, LR: 3e-3, Warmup: 1, MinLRFrac: 0.1,
		GradClip: 1, AdamW: adam, Seed: 7, Threads: 1}
	ctx := context.Background()

	tr, err := trainer.New(opts, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rb, err := NewRewardBatches(d, cfg.NEmbd, opts.Seed, BatchConfig{Batch: 2 * pairs})
	if err != nil {
		t.Fatal(err)
	}
	tr.Source = rb
	if err := tr.SetHead(rb); err != nil {
		t.Fatal(err)
	}

	m, err := model.New(cfg, 2*pairs, seq, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(opts.Seed)
	rm, err := NewRewardModel(m, opts.Seed)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := NewRewardTrainer(rm, adam, optim.Schedule{Peak: opts.LR, Warmup: opts.Warmup, Total: steps, MinFrac: opts.MinLRFrac}, opts.GradClip)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for s := 0; s < steps; s++ {
		st, err := tr.TrainStep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		idx := make([]int, pairs)
		for i := range idx {
			idx[i] = next % (d.Rows / 2)
			next++
		}
		want, acc, err := ref.TrainStep(ctx, d, idx)
		if err != nil {
			t.Fatal(err)
		}
		if e := math.Abs(st.Loss-want) / want; e > 1e-5 {
			t.Errorf("step %d: loss %.7f on the trainer, %.7f by RewardTrainer", s+1, st.Loss, want)
		}
		if got := rb.Stats.Correct / rb.Stats.Pairs; math.Abs(got-acc) > 1e-9 || rb.Stats.Pairs != pairs {
			t.Errorf("step %d: accuracy %g over %g pairs, RewardTrainer %g", s+1, got, rb.Stats.Pairs, acc)
		}
	}
	h := rb.Head()
	for i, w := range rm.Head.Weight {
		if math.Abs(float64(h.Weight[i]-w)) > 1e-4 {
			t.Fatalf("head weight %d: %g on the trainer, %g by RewardTrainer", i, h.Weight[i], w)
		}
	}
	if math.Abs(float64(h.Bias-rm.Head.Bias)) > 1e-4 {
		t.Fatalf("head bias %g on the trainer, %g by RewardTrainer", h.Bias, rm.Head.Bias)
	}
}

// TestRewardBatchesPositions: data-parallel ranks take disjoint pairs of
// each global batch, SeekStep lands where Next would, and a micro-batch
// splitting a pair is an error.
func TestRewardBatchesPositions(t *testing.T) {
	d := rewardTestRows(t, 10, 12)
	S := d.Seq
	mk := func(rank int) *RewardBatches {
		b, err := NewRewardBatches(d, 8, 1, BatchConfig{Batch: 4, DPRank: rank, DPSize: 2, Shuffle: true, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	in, tg := make([]int32, 4*S), make([]int32, 4*S)
	a, b := mk(0), mk(1)
	seen := map[int]bool{}
	for step := 0; step < 2; step++ {
		for _, x := range []*RewardBatches{a, b} {
			if err := x.Next(in, tg); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 4; i += 2 {
				if x.cur[i]%2 != 0 || x.cur[i+1] != x.cur[i]+1 {
					t.Fatalf("rows %v are not chosen/rejected pairs", x.cur)
				}
				if seen[x.cur[i]] {
					t.Fatalf("pair row %d taken twice in the first epoch", x.cur[i])
				}
				seen[x.cur[i]] = true
			}
		}
	}
	c := mk(1)
	if err := c.SeekStep(2); err != nil {
		t.Fatal(err)
	}
	b.Next(in, tg)
	want := append([]int(nil), b.cur...)
	c.Next(in, tg)
	for i := range want {
		if c.cur[i] != want[i] {
			t.Fatalf("after SeekStep(2) rows %v, Next gives %v", c.cur, want)
		}
	}
	hid := make([]float32, 1*S*8)
	if _, err := c.HeadForward(1, hid, make([]float32, len(hid))); err == nil {
		t.Fatal("a micro-batch of one row (half a pair) was accepted")
	}
	if _, err := NewRewardBatches(d, 8, 1, BatchConfig{Batch: 3}); err == nil {
		t.Fatal("an odd number of rows per rank was accepted")
	}
}
