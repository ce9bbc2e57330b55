package data

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// LoaderConfig describes one data-parallel rank's view of the batches.
type LoaderConfig struct {
	Batch   int    // rows per step for THIS rank
	Seq     int    // tokens per row
	DPRank  int    // this rank's index in the data-parallel group
	DPSize  int    // data-parallel group size (0 means 1)
	Shuffle bool   // permute window order per epoch; false = llm.c-style sequential
	Seed    uint64 // shuffle seed; all ranks must use the same one
}

// LoaderState is the position of a Loader, JSON-serializable for
// checkpoints. The position counts global batches, so it restores onto any
// DP layout with the same global batch (Batch*DPSize rows) and Seq.
type LoaderState struct {
	Epoch        int    `json:"epoch"`
	BatchInEpoch int    `json:"batch_in_epoch"`
	Seq          int    `json:"seq"`
	GlobalRows   int    `json:"global_rows"`
	Tokens       int    `json:"tokens"`
	Shuffle      bool   `json:"shuffle"`
	Seed         uint64 `json:"seed"`
}

// Loader cuts a token stream into (inputs, targets) batches.
//
// The stream is viewed as windows of Seq+1 tokens with stride Seq: window w
// covers tokens [w*Seq, w*Seq+Seq]. Its first Seq tokens are one input row,
// its last Seq the target row (the next token at every position), as in
// llm.c. An epoch is floor(windows / globalRows) global batches; windows
// left over at the end are skipped and the next epoch starts again at the
// beginning (sequential) or with a new permutation (shuffle).
//
// Global batch k of an epoch takes windows order[k*G : (k+1)*G] where G =
// Batch*DPSize and order is the identity (sequential) or the epoch's seeded
// permutation. Rank r takes rows [r*Batch, (r+1)*Batch) of that.
type Loader struct {
	tokens  []uint16
	cfg     LoaderConfig
	global  int // rows per global batch
	windows int // number of Seq+1 windows in tokens
	perEp   int // global batches per epoch

	epoch, batch int   // next batch to return
	perm         []int // window order for perm's epoch (shuffle only)
	permEpoch    int
}

// NewLoader checks cfg against the data and returns a Loader at the start.
// tokens is not copied and must not change while the Loader is in use.
func NewLoader(tokens []uint16, cfg LoaderConfig) (*Loader, error) {
	if cfg.DPSize == 0 {
		cfg.DPSize = 1
	}
	switch {
	case cfg.Batch <= 0:
		return nil, fmt.Errorf("data loader: batch %d must be positive", cfg.Batch)
	case cfg.Seq <= 0:
		return nil, fmt.Errorf("data loader: seq %d must be positive", cfg.Seq)
	case cfg.DPSize < 0:
		return nil, fmt.Errorf("data loader: DP size %d must be positive", cfg.DPSize)
	case cfg.DPRank < 0 || cfg.DPRank >= cfg.DPSize:
		return nil, fmt.Errorf("data loader: DP rank %d outside [0, %d)", cfg.DPRank, cfg.DPSize)
	}
	global := cfg.Batch * cfg.DPSize
	windows := 0
	if len(tokens) > 0 {
		windows = (len(tokens) - 1) / cfg.Seq
	}
	if windows < global {
		return nil, fmt.Errorf("data loader: %d tokens make %d windows of %d+1 tokens, fewer than one global batch of %d rows (batch %d x DP %d); need at least %d tokens",
			len(tokens), windows, cfg.Seq, global, cfg.Batch, cfg.DPSize, global*cfg.Seq+1)
	}
	return &Loader{
		tokens: tokens, cfg: cfg, global: global, windows: windows,
		perEp: windows / global, permEpoch: -1,
	}, nil
}

// BatchesPerEpoch is the number of global batches before the data repeats.
func (l *Loader) BatchesPerEpoch() int { return l.perEp }

// Epoch is the epoch of the next batch (0-based).
func (l *Loader) Epoch() int { return l.epoch }

// TokensPerEpoch is the number of input tokens consumed (over all ranks)
// per epoch.
func (l *Loader) TokensPerEpoch() int { return l.perEp * l.global * l.cfg.Seq }

// Next fills inputs and targets, each of length Batch*Seq (row-major
// [Batch][Seq]), with this rank's rows of the next global batch.
func (l *Loader) Next(inputs, targets []int32) error {
	n := l.cfg.Batch * l.cfg.Seq
	if len(inputs) != n || len(targets) != n {
		return fmt.Errorf("data loader: inputs/targets have %d/%d elements, want batch %d x seq %d = %d",
			len(inputs), len(targets), l.cfg.Batch, l.cfg.Seq, n)
	}
	base := l.batch*l.global + l.cfg.DPRank*l.cfg.Batch
	seq := l.cfg.Seq
	for row := 0; row < l.cfg.Batch; row++ {
		w := l.window(base + row)
		src := l.tokens[w*seq : w*seq+seq+1]
		in, tg := inputs[row*seq:(row+1)*seq], targets[row*seq:(row+1)*seq]
		for j := 0; j < seq; j++ {
			in[j] = int32(src[j])
			tg[j] = int32(src[j+1])
		}
	}
	l.batch++
	if l.batch == l.perEp {
		l.batch = 0
		l.epoch++
	}
	return nil
}

// window maps the i-th slot of the current epoch to a window index.
func (l *Loader) window(i int) int {
	if !l.cfg.Shuffle {
		return i
	}
	if l.permEpoch != l.epoch {
		l.perm = permutation(l.windows, l.cfg.Seed, uint64(l.epoch))
		l.permEpoch = l.epoch
	}
	return l.perm[i]
}

// permutation is a Fisher-Yates shuffle of 0..n-1 driven by PCG(seed,
// epoch). It is written out (rather than rand.Perm) so the order depends only
// on the PCG output stream, which is specified, not on library internals.
func permutation(n int, seed, epoch uint64) []int {
	rng := rand.NewPCG(seed, epoch)
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(boundedUint64(rng, uint64(i+1)))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// boundedUint64 returns a uniform value in [0, n) by rejection sampling.
func boundedUint64(rng *rand.PCG, n uint64) uint64 {
	// Reject the top partial block of 2^64 so every residue is equally likely.
	limit := -n % n // == 2^64 mod n
	for {
		v := rng.Uint64()
		if v >= limit {
			return v % n
		}
	}
}

// Reset rewinds to the first batch of epoch 0, e.g. to evaluate the same
// validation batches every time.
func (l *Loader) Reset() { l.epoch, l.batch = 0, 0 }

// State returns the loader position for a checkpoint.
func (l *Loader) State() LoaderState {
	return LoaderState{
		Epoch: l.epoch, BatchInEpoch: l.batch, Seq: l.cfg.Seq, GlobalRows: l.global,
		Tokens: len(l.tokens), Shuffle: l.cfg.Shuffle, Seed: l.cfg.Seed,
	}
}

// Restore moves the loader to a saved position. The state must come from a
// loader over the same number of tokens with the same Seq, global batch
// size, shuffle mode and seed; otherwise resuming would silently train on
// different data, so it is an error.
func (l *Loader) Restore(s LoaderState) error {
	var errs []error
	if s.Seq != l.cfg.Seq {
		errs = append(errs, fmt.Errorf("seq %d, loader has %d", s.Seq, l.cfg.Seq))
	}
	if s.GlobalRows != l.global {
		errs = append(errs, fmt.Errorf("global batch %d rows, loader has %d", s.GlobalRows, l.global))
	}
	if s.Tokens != len(l.tokens) {
		errs = append(errs, fmt.Errorf("%d tokens, loader has %d", s.Tokens, len(l.tokens)))
	}
	if s.Shuffle != l.cfg.Shuffle || (s.Shuffle && s.Seed != l.cfg.Seed) {
		errs = append(errs, fmt.Errorf("shuffle=%v seed=%d, loader has shuffle=%v seed=%d", s.Shuffle, s.Seed, l.cfg.Shuffle, l.cfg.Seed))
	}
	if s.Epoch < 0 || s.BatchInEpoch < 0 || s.BatchInEpoch >= l.perEp {
		errs = append(errs, fmt.Errorf("position epoch %d batch %d is outside [0, %d) batches per epoch", s.Epoch, s.BatchInEpoch, l.perEp))
	}
	if len(errs) > 0 {
		return fmt.Errorf("data loader restore: saved state does not match this data: %w", errors.Join(errs...))
	}
	l.epoch, l.batch = s.Epoch, s.BatchInEpoch
	return nil
}
