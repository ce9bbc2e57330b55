package data

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func seqTokens(n int) []uint16 {
	t := make([]uint16, n)
	for i := range t {
		t[i] = uint16(i)
	}
	return t
}

func next(t *testing.T, l *Loader, batch, seq int) (in, tg []int32) {
	t.Helper()
	in, tg = make([]int32, batch*seq), make([]int32, batch*seq)
	if err := l.Next(in, tg); err != nil {
		t.Fatal(err)
	}
	return in, tg
}

func TestSequentialMatchesLLMC(t *testing.T) {
	// 2 rows of 4, 30 tokens: 7 windows, 3 batches per epoch (window 6 skipped).
	l, err := NewLoader(seqTokens(30), LoaderConfig{Batch: 2, Seq: 4})
	if err != nil {
		t.Fatal(err)
	}
	if l.BatchesPerEpoch() != 3 || l.TokensPerEpoch() != 24 {
		t.Fatalf("per epoch %d batches %d tokens", l.BatchesPerEpoch(), l.TokensPerEpoch())
	}
	for step := 0; step < 5; step++ {
		in, tg := next(t, l, 2, 4)
		// llm.c: batch k reads B*T+1 tokens from position k*B*T, row b at +b*T.
		pos := (step % 3) * 8
		for i := range in {
			if in[i] != int32(pos+i) || tg[i] != int32(pos+i+1) {
				t.Fatalf("step %d: in %v tg %v, want window from %d", step, in, tg, pos)
			}
		}
	}
	if l.Epoch() != 1 {
		t.Fatalf("epoch %d after 5 steps of 3 per epoch", l.Epoch())
	}
	l.Reset()
	if in, _ := next(t, l, 2, 4); in[0] != 0 || l.Epoch() != 0 {
		t.Fatalf("after Reset the first batch starts at %d (epoch %d)", in[0], l.Epoch())
	}
}

// TestRanksPartitionGlobalBatch: the union of all DP ranks' batches, rank by
// rank, equals the single-process batch with Batch*DPSize rows, step after
// step and across epoch boundaries, in both modes.
func TestRanksPartitionGlobalBatch(t *testing.T) {
	tokens := seqTokens(1000)
	const batch, seq, dp = 3, 7, 4
	for _, shuffle := range []bool{false, true} {
		single, err := NewLoader(tokens, LoaderConfig{Batch: batch * dp, Seq: seq, Shuffle: shuffle, Seed: 42})
		if err != nil {
			t.Fatal(err)
		}
		ranks := make([]*Loader, dp)
		for r := range ranks {
			if ranks[r], err = NewLoader(tokens, LoaderConfig{Batch: batch, Seq: seq, DPRank: r, DPSize: dp, Shuffle: shuffle, Seed: 42}); err != nil {
				t.Fatal(err)
			}
		}
		steps := 2*single.BatchesPerEpoch() + 1
		for step := 0; step < steps; step++ {
			wantIn, wantTg := next(t, single, batch*dp, seq)
			var gotIn, gotTg []int32
			for _, l := range ranks {
				in, tg := next(t, l, batch, seq)
				gotIn, gotTg = append(gotIn, in...), append(gotTg, tg...)
			}
			if !slices.Equal(gotIn, wantIn) || !slices.Equal(gotTg, wantTg) {
				t.Fatalf("shuffle=%v step %d: ranks' union differs from the single-process batch", shuffle, step)
			}
		}
	}
}

func TestShuffleEpochs(t *testing.T) {
	tokens := seqTokens(401) // 100 windows of 4+1
	const batch, seq = 10, 4
	l, err := NewLoader(tokens, LoaderConfig{Batch: batch, Seq: seq, Shuffle: true, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	epochStarts := func(l *Loader) [][]int32 {
		var eps [][]int32
		for e := 0; e < 2; e++ {
			var starts []int32
			for b := 0; b < l.BatchesPerEpoch(); b++ {
				in, tg := next(t, l, batch, seq)
				for r := 0; r < batch; r++ {
					row := in[r*seq : (r+1)*seq]
					if row[0]%seq != 0 || tg[r*seq] != row[0]+1 {
						t.Fatalf("row %v is not a window of stride %d", row, seq)
					}
					starts = append(starts, row[0])
				}
			}
			eps = append(eps, starts)
		}
		return eps
	}
	eps := epochStarts(l)
	for e, starts := range eps {
		s := slices.Clone(starts)
		slices.Sort(s)
		if len(slices.Compact(s)) != 100 {
			t.Fatalf("epoch %d repeats windows", e)
		}
	}
	if slices.Equal(eps[0], eps[1]) {
		t.Fatal("two epochs have the same order")
	}
	if ident := seqWindowStarts(100, seq); slices.Equal(eps[0], ident) {
		t.Fatal("shuffle did not permute")
	}
	// Same seed, same order; another seed, another order.
	l2, _ := NewLoader(tokens, LoaderConfig{Batch: batch, Seq: seq, Shuffle: true, Seed: 7})
	if again := epochStarts(l2); !slices.Equal(again[0], eps[0]) || !slices.Equal(again[1], eps[1]) {
		t.Fatal("same seed gave a different order")
	}
	l3, _ := NewLoader(tokens, LoaderConfig{Batch: batch, Seq: seq, Shuffle: true, Seed: 8})
	if other := epochStarts(l3); slices.Equal(other[0], eps[0]) {
		t.Fatal("different seeds gave the same order")
	}
}

func seqWindowStarts(n, seq int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i * seq)
	}
	return out
}

func TestStateRestoreExactResume(t *testing.T) {
	tokens := seqTokens(2000)
	for _, shuffle := range []bool{false, true} {
		cfg := LoaderConfig{Batch: 4, Seq: 8, DPRank: 1, DPSize: 2, Shuffle: shuffle, Seed: 3}
		a, _ := NewLoader(tokens, cfg)
		for i := 0; i < 40; i++ { // crosses an epoch (62 windows / 8 rows = 7 batches per epoch)
			next(t, a, 4, 8)
		}
		blob, err := json.Marshal(a.State())
		if err != nil {
			t.Fatal(err)
		}
		var st LoaderState
		if err := json.Unmarshal(blob, &st); err != nil {
			t.Fatal(err)
		}
		b, _ := NewLoader(tokens, cfg)
		if err := b.Restore(st); err != nil {
			t.Fatal(err)
		}
		// The same global position under a different layout (1 rank x 8 rows).
		c, _ := NewLoader(tokens, LoaderConfig{Batch: 8, Seq: 8, Shuffle: shuffle, Seed: 3})
		if err := c.Restore(st); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			ai, at := next(t, a, 4, 8)
			bi, bt := next(t, b, 4, 8)
			ci, _ := next(t, c, 8, 8)
			if !slices.Equal(ai, bi) || !slices.Equal(at, bt) {
				t.Fatalf("shuffle=%v: resumed loader diverged at step %d", shuffle, i)
			}
			if !slices.Equal(ai, ci[32:]) {
				t.Fatalf("shuffle=%v: rank 1 of 2 is not the second half of the 1-rank batch", shuffle)
			}
		}
	}
}

func TestRestoreRejectsMismatch(t *testing.T) {
	tokens := seqTokens(500)
	l, _ := NewLoader(tokens, LoaderConfig{Batch: 2, Seq: 8, Shuffle: true, Seed: 1})
	good := l.State()
	bad := []func(*LoaderState){
		func(s *LoaderState) { s.Seq = 16 },
		func(s *LoaderState) { s.GlobalRows = 4 },
		func(s *LoaderState) { s.Tokens = 499 },
		func(s *LoaderState) { s.Seed = 2 },
		func(s *LoaderState) { s.Shuffle = false },
		func(s *LoaderState) { s.BatchInEpoch = l.BatchesPerEpoch() },
		func(s *LoaderState) { s.Epoch = -1 },
	}
	for i, f := range bad {
		s := good
		f(&s)
		if err := l.Restore(s); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestLoaderBadInput(t *testing.T) {
	tokens := seqTokens(100)
	cases := []struct {
		cfg  LoaderConfig
		want string
	}{
		{LoaderConfig{Batch: 0, Seq: 4}, "batch"},
		{LoaderConfig{Batch: 1, Seq: 0}, "seq"},
		{LoaderConfig{Batch: 1, Seq: 4, DPRank: 2, DPSize: 2}, "rank"},
		{LoaderConfig{Batch: 1, Seq: 4, DPSize: -1}, "DP size"},
		// seq 10 over 100 tokens gives 9 windows, fewer than 5x2 rows.
		{LoaderConfig{Batch: 5, Seq: 10, DPSize: 2}, "fewer than one global batch"},
	}
	for _, c := range cases {
		if _, err := NewLoader(tokens, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if _, err := NewLoader(nil, LoaderConfig{Batch: 1, Seq: 1}); err == nil {
		t.Error("empty tokens accepted")
	}
	l, _ := NewLoader(tokens, LoaderConfig{Batch: 2, Seq: 4})
	if err := l.Next(make([]int32, 8), make([]int32, 7)); err == nil {
		t.Error("short targets accepted")
	}
}

func TestPermutationUniformish(t *testing.T) {
	// Position 0 of a 4-permutation over many seeds: each value about 1/4.
	counts := make([]int, 4)
	for seed := uint64(0); seed < 4000; seed++ {
		counts[permutation(4, seed, 0)[0]]++
	}
	for v, c := range counts {
		if c < 850 || c > 1150 {
			t.Fatalf("value %d first in %d of 4000 permutations", v, c)
		}
	}
}
