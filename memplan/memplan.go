package memplan

import (
	"context"
	"errors"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/parallel/zero"
)

// Config is everything that decides a rank's memory.
type Config struct {
	Model model.Config
	Mesh  mesh.Mesh // DP x TP x PP
	// Zero is the ZeRO stage: 0 (replicated), 1 (optimizer state sharded),
	// 2 (and gradients), 3 (and parameters).
	Zero int
	// ShardGroup is the number of data-parallel ranks ZeRO-2/3 shard over
	// (0: all of them, Mesh.DP).
	ShardGroup int
	// ReshardAfterForward (ZeRO-3) frees each unit's gathered parameters
	// after its forward and gathers them again for its backward; false
	// keeps every unit gathered from its forward to its backward.
	ReshardAfterForward bool
	// ZeroMinUnit is the trainer's Options.ZeroMinUnit (0: the default).
	ZeroMinUnit  int
	Recompute    string // none (or ""), selective, full
	Batch        int    // global sequences per optimizer step
	Micro        int    // micro-batches per step and data-parallel rank (0: 1)
	Seq          int    // tokens per sequence
	Precision    string // fp32 (or ""), bf16, fp16
	Schedule     string // pipeline schedule (default 1f1b)
	StageLayers  []int  // layers per pipeline stage (nil: balanced)
	BucketBytes  int    // data-parallel gradient bucket (0: 25 MB)
	GradCompress string // none (or ""), bf16, fp8, fp8-e4m3, fp8-e5m2
	// Threads is the compute goroutines per process (FlashAttention keeps
	// scratch per worker); 0: 1.
	Threads int
	// Runtime is the resident memory of a worker process besides the
	// buffers planned here: the Go runtime, GEMM packing, logging, the
	// binary's pages (0: DefaultRuntime).
	Runtime int64
	// PeerBytes is the transport's resident memory per peer rank (0:
	// DefaultPeerBytes).
	PeerBytes int64
	// Data is the resident memory of the training data (the corpus each
	// process loads; see DataBytes).
	Data int64
}

// Breakdown is one rank's memory in bytes by category.
type Breakdown struct {
	// Params: the float32 parameters (ZeRO-3: the rank's shard plus the
	// gathered working set) and, under bf16/fp16, the rounded copy of
	// them and the two operand scratch slots of a product.
	Params int64 `json:"params"`
	// Grads: the float32 gradients (ZeRO-2/3: the rank's shard plus the
	// units being reduced).
	Grads int64 `json:"grads"`
	// Optimizer: AdamW's two moments of the parameters this rank updates.
	Optimizer int64 `json:"optimizer"`
	// Activations: the activation slots the pipeline schedule keeps in
	// flight plus the model's backward scratch.
	Activations int64 `json:"activations"`
	// Comm: compressed gradient buckets, pipeline send/receive buffers,
	// ZeRO-3 gather staging.
	Comm int64 `json:"comm"`
	// Other: the process around the buffers (Go runtime, binary, GEMM
	// packing, transport rings) and the training data.
	Other int64 `json:"other"`
	Total int64 `json:"total"`
}

// Sum sets Total to the sum of the categories and returns b.
func (b Breakdown) Sum() Breakdown {
	b.Total = b.Params + b.Grads + b.Optimizer + b.Activations + b.Comm + b.Other
	return b
}

// Max is the category-wise maximum of a and b (Total recomputed as the
// larger of the two totals: the maximum rank, not a sum of maxima).
func Max(a, b Breakdown) Breakdown {
	out := Breakdown{Params: max(a.Params, b.Params), Grads: max(a.Grads, b.Grads), Optimizer: max(a.Optimizer, b.Optimizer),
		Activations: max(a.Activations, b.Activations), Comm: max(a.Comm, b.Comm), Other: max(a.Other, b.Other)}
	out.Total = max(a.Total, b.Total)
	return out
}

// Categories lists the categories by name (metrics, messages), in order.
func (b Breakdown) Categories() []Category {
	return []Category{{"params", b.Params}, {"grads", b.Grads}, {"optimizer", b.Optimizer},
		{"activations", b.Activations}, {"comm", b.Comm}, {"other", b.Other}}
}

// Category is one named line of a Breakdown.
type Category struct {
	Name  string
	Bytes int64
}

// Stage is the plan of the ranks of one pipeline stage (TP ranks of a
// stage hold equal shards; data-parallel ranks differ at most by a ZeRO
// chunk's remainder, and Breakdown is the largest of them).
type Stage struct {
	Stage    int    `json:"stage"`
	Blocks   [2]int `json:"blocks"` // blocks [lo, hi) of the stage
	First    bool   `json:"first"`
	Last     bool   `json:"last"`
	Elements int64  `json:"elements"` // parameter elements a rank of this stage holds (its TP shard), P
	Breakdown
}

// DefaultRuntime is a worker's resident memory besides the planned
// buffers, the data and the transport: the Go runtime, the binary's pages
// (about 18 MiB of the 36 MB binary), GEMM packing, logging. Measured on
// linux/amd64 (bench/RESULTS.md, memory) as a single process's peak RSS
// minus its buffers.
const DefaultRuntime = 32 << 20

// DefaultPeerBytes is the resident memory per peer a rank exchanges data with:
// the shared-memory transport's two 4 MiB rings of a pair (both ends map
// and touch them) and its receive buffers. Measured as the growth of the
// same residue from 1 to 2 and 4 ranks.
const DefaultPeerBytes = 9 << 20

// Peers is the number of other ranks a rank of stage s exchanges data
// with: its data- and tensor-parallel groups, its pipeline neighbours and,
// on the first and last of more than two stages, the tied embedding's
// partner.
func Peers(m mesh.Mesh, s int) int {
	n := m.DP - 1 + m.TP - 1
	if s > 0 {
		n++
	}
	if s < m.PP-1 {
		n++
	}
	if m.PP > 2 && (s == 0 || s == m.PP-1) {
		n++
	}
	return n
}

// Plan predicts every pipeline stage's per-rank memory. It allocates
// nothing of the model (a model that does not fit can be planned).
func Plan(c Config) ([]Stage, error) {
	if err := c.normalize(); err != nil {
		return nil, err
	}
	bounds, err := model.StageBounds(c.Model.NLayer, c.Mesh.PP, c.StageLayers)
	if err != nil {
		return nil, err
	}
	sched, err := pipeline.Generate(pipeline.Spec{Name: c.Schedule, Stages: c.Mesh.PP, Micro: c.Micro})
	if err != nil {
		return nil, err
	}
	out := make([]Stage, c.Mesh.PP)
	for s := range out {
		l := model.Stage(sizeGroup(c.Mesh.TP), bounds, s)
		shapes, err := model.ParamShapes(c.Model, l)
		if err != nil {
			return nil, err
		}
		st, err := c.stage(s, l, shapes, sched.InFlight(s), sched.Needs()&pipeline.NeedsSplitBackward != 0)
		if err != nil {
			return nil, fmt.Errorf("pipeline stage %d: %w", s, err)
		}
		st.Stage = s
		out[s] = st
	}
	return out, nil
}

// MaxRank is the largest rank's breakdown over stages: each category's
// maximum, and Total the largest rank's total.
func MaxRank(stages []Stage) Breakdown {
	var b Breakdown
	for _, s := range stages {
		b = Max(b, s.Breakdown)
	}
	return b
}

func (c *Config) normalize() error {
	if err := c.Model.Validate(); err != nil {
		return err
	}
	if c.Micro == 0 {
		c.Micro = 1
	}
	if c.Schedule == "" {
		c.Schedule = pipeline.OneFOneB
	}
	if c.BucketBytes == 0 {
		c.BucketBytes = 25 << 20
	}
	if c.Threads <= 0 {
		c.Threads = 1
	}
	if c.Runtime == 0 {
		c.Runtime = DefaultRuntime
	}
	if c.PeerBytes == 0 {
		c.PeerBytes = DefaultPeerBytes
	}
	if c.ShardGroup == 0 {
		c.ShardGroup = c.Mesh.DP
	}
	m := c.Mesh
	switch {
	case m.DP <= 0 || m.TP <= 0 || m.PP <= 0:
		return fmt.Errorf("mesh %dx%dx%d: every degree must be positive", m.DP, m.TP, m.PP)
	case c.Zero < 0 || c.Zero > 3:
		return fmt.Errorf("ZeRO stage %d is not one of 0, 1, 2, 3", c.Zero)
	case c.ShardGroup < 1 || m.DP%c.ShardGroup != 0:
		return fmt.Errorf("shard group %d does not divide the %d data-parallel ranks", c.ShardGroup, m.DP)
	case c.Batch <= 0 || c.Seq <= 0 || c.Micro < 0:
		return fmt.Errorf("batch %d, sequence %d and micro-batches %d must be positive", c.Batch, c.Seq, c.Micro)
	case c.Batch%(m.DP*c.Micro) != 0:
		return fmt.Errorf("global batch %d does not split into %d data-parallel ranks x %d micro-batches", c.Batch, m.DP, c.Micro)
	case c.BucketBytes < 4:
		return fmt.Errorf("bucket size %d bytes is too small", c.BucketBytes)
	}
	if err := model.CheckRecompute(c.Recompute); err != nil {
		return err
	}
	switch c.Precision {
	case "", "fp32", "bf16", "fp16":
	default:
		return fmt.Errorf("precision %q is not one of fp32, bf16, fp16", c.Precision)
	}
	switch c.GradCompress {
	case "", "none", "bf16", "fp8", "fp8-e4m3", "fp8-e5m2":
	default:
		return fmt.Errorf("gradient compression %q is not one of none, bf16, fp8, fp8-e5m2", c.GradCompress)
	}
	return model.CheckTP(c.Model, m.TP)
}

// dims are a rank's local widths (model.localDims, recomputed).
type dims struct {
	C, Cl, NHl, NKVl, KVl, QKVl, Hl, FCl, Vl int
}

func localDims(cfg model.Config, tp int) dims {
	d := dims{C: cfg.NEmbd, Cl: cfg.NEmbd / tp, NHl: cfg.NHead / tp, NKVl: max(1, cfg.KVHeads()/tp), Hl: cfg.Hidden() / tp, Vl: cfg.VocabSize / tp}
	d.KVl = d.NKVl * cfg.HeadDim()
	d.QKVl = d.Cl + 2*d.KVl
	d.FCl = d.Hl
	if cfg.Activation == model.SwiGLU {
		d.FCl = 2 * d.Hl
	}
	return d
}

// stage plans one stage's rank.
func (c *Config) stage(s int, l model.Layout, shapes []model.ParamShape, slots int, splitBackward bool) (Stage, error) {
	st := Stage{Blocks: [2]int{l.FirstBlock, l.EndBlock}, First: l.First, Last: l.Last}
	var P int64
	for _, p := range shapes {
		P += int64(p.Size())
	}
	st.Elements = P
	// ZeRO-2/3 units and how a pass walks them: the sharder's own
	// bookkeeping (zero.Peaks) gives the peaks it will measure
	units := model.ShapeUnits(shapes, c.ZeroMinUnit)
	G := int64(c.ShardGroup)
	var shard int64 // Σ ceil(unit/G)
	size := make([]int, len(units))
	for i, u := range units {
		size[i] = u.Size()
		n := (int64(u.Size()) + G - 1) / G
		shard += n
	}
	f := model.PassGroups(units, l, c.Model, model.Pass{})
	g := model.PassGroups(units, l, c.Model, model.Pass{Backward: true, FullRecompute: c.Recompute == model.RecomputeFull})
	// gathered units as ZeRO-3 holds them: float32 and the rounded copy,
	// or under bf16/fp16 the copy alone for the weights gathered in the
	// compute precision (zero.GatherBytes)
	copyBytes := model.CopyBytes(model.Precision(c.Precision))
	var low [][2]int
	if c.Zero == 3 && copyBytes > 0 {
		low = model.LowPrecisionRanges(shapes, c.Model, c.Mesh.TP)
	}
	gbytes := zero.GatherBytes(units, low, copyBytes, false)
	fwdPeak, bwdPeak := zero.Peaks(gbytes, size, f, g, c.Zero == 3, !c.ReshardAfterForward)
	fwd, bwd := int64(fwdPeak), int64(bwdPeak)

	b := &st.Breakdown
	// parameters
	resident := P // elements of the parameters whose rounded copy is held whole
	switch c.Zero {
	case 3:
		b.Params = 4*shard + fwd // fwd: bytes, the copy included
		resident = 0
	default:
		b.Params = 4 * P
	}
	B, T := c.Batch/c.Mesh.DP/c.Micro, c.Seq
	N := int64(B) * int64(T)
	d := localDims(c.Model, c.Mesh.TP)
	if c.Precision == "bf16" || c.Precision == "fp16" {
		per := int64(2) // bf16: uint16 bits; fp16: float32-held rounded values
		if c.Precision == "fp16" {
			per = 4
		}
		widest := int64(max(d.C, d.QKVl, d.FCl, d.Hl, d.Vl))
		b.Params += per * (resident + 2*N*widest)
	}
	// gradients
	switch c.Zero {
	case 2, 3:
		b.Grads = 4*shard + 4*bwd
	default:
		b.Grads = 4 * P
	}
	// optimizer: AdamW's m and v
	switch {
	case c.Zero == 0 || c.Mesh.DP == 1 && c.Zero == 1:
		b.Optimizer = 8 * P
	case c.Zero == 1:
		b.Optimizer = 8 * zero1Share(P, int64(c.BucketBytes/4), int64(c.Mesh.DP))
	default:
		b.Optimizer = 8 * shard
	}
	// activations: the slots in flight and the backward scratch
	slot := actsBytes(c.Model, d, l, B, T, c.Recompute)
	if splitBackward {
		// the zero-bubble schedules' split backward copies the output
		// gradient of each block's four linear layers until their
		// weight gradients run (model.deferWeight), kept per slot
		slot += 4 * N * int64(l.EndBlock-l.FirstBlock) * int64(2*d.C+d.FCl+d.QKVl)
	}
	b.Activations = int64(slots)*slot + scratchBytes(c.Model, d, l, c.Mesh.TP, B, T, c.Threads)
	// communication buffers
	if c.Mesh.DP > 1 {
		b.Comm += wireBytes(P, int64(c.BucketBytes/4), int64(c.Mesh.DP), c.GradCompress)
	}
	hidden := 4 * N * int64(d.C)
	if !l.First {
		b.Comm += int64(slots) * 2 * hidden // recvAct and sendGrad per slot
	}
	if !l.Last {
		b.Comm += hidden // gradIn
	}
	// ZeRO-3 gathers in place: each rank copies its piece into the unit's
	// pages and the all-gather fills the rest (no staging buffer)
	b.Other = c.Runtime + c.Data + int64(Peers(c.Mesh, s))*c.PeerBytes
	st.Breakdown = b.Sum()
	return st, nil
}

// zero1Share is the largest data-parallel rank's share of P elements cut
// into buckets of per elements, each reduce-scattered into dp chunks
// (parallel/data.Bucketer.Owned): rank 0's chunks are the largest.
func zero1Share(P, per, dp int64) int64 {
	var n int64
	for lo := int64(0); lo < P; lo += per {
		size := min(per, P-lo)
		a, b := collective.Chunk(int(size), int(dp), 0)
		n += int64(b - a)
	}
	return n
}

// wireBytes are the gradient buckets' compressed copies
// (parallel/data.NewBucketer): bf16, one uint16 per element; fp8, every
// rank's slot of each bucket, a scale word pair and the codes packed two
// to a uint16.
func wireBytes(P, per, dp int64, compress string) int64 {
	var n int64
	for lo := int64(0); lo < P; lo += per {
		size := min(per, P-lo)
		switch compress {
		case "bf16":
			n += 2 * size
		case "fp8", "fp8-e4m3", "fp8-e5m2":
			n += 2 * dp * (2 + (size+1)/2)
		}
	}
	return n
}

// actsBytes is one activation slot's memory (model.GPT.NewActsRecompute:
// what Acts.Bytes reports) for a micro-batch of B x T on a rank with local
// widths d holding layout l.
func actsBytes(cfg model.Config, d dims, l model.Layout, B, T int, recompute string) int64 {
	N := int64(B) * int64(T)
	C := int64(d.C)
	n := 2*N + N*C // tokens and targets (int32), input
	perBlock := N*C + 2*N + N*int64(d.QKVl) + N*int64(d.NHl) + N*int64(d.Cl) + N*C + N*C + 2*N + N*int64(d.FCl) + N*C
	fchAct := N * int64(d.Hl)
	blocks := int64(l.EndBlock - l.FirstBlock)
	switch {
	case blocks == 0:
	case recompute == model.RecomputeSelective:
		n += blocks*perBlock + fchAct // one MLP activation shared by every block
	case recompute == model.RecomputeFull:
		// each block keeps its output; one working set (all but the output)
		n += blocks*N*C + perBlock - N*C + fchAct
	default:
		n += blocks * (perBlock + fchAct)
	}
	if l.Last {
		n += N*C + 2*N + N*int64(d.Vl) + N
	}
	return 4 * n
}

// scratchBytes is the model's memory besides parameters, gradients and
// activation slots (model.GPT.ScratchBytes) for micro-batches of up to
// B x T and threads compute goroutines.
func scratchBytes(cfg model.Config, d dims, l model.Layout, tp, B, T, threads int) int64 {
	N := int64(B) * int64(T)
	C := int64(d.C)
	n := 2*N*C + N*int64(d.Cl) + N*int64(d.QKVl) + N*int64(d.FCl) + N*int64(d.Hl) // dres, dln, datty, dqkv, dfch, dfchAct
	if threads > 1 && cfg.Norm != model.RMSNorm {
		n += 2 * N // LayerNorm backward's row statistics
	}
	if l.First && tp > 1 {
		n += N * C // embedOut
	}
	const fb = 128 // model.flashBlock
	n += int64(threads) * (2*fb*fb + 2*fb + int64(T))
	if cfg.Position == model.PosRoPE {
		n += 2 * int64(T) * int64(cfg.HeadDim()/2)
	}
	if R := kvReplicas(cfg, tp); R > 1 {
		W := int64(cfg.NHead*cfg.HeadDim() + 2*cfg.KVDim())
		n += C*int64(d.QKVl) + int64(d.QKVl) + C*W + W // dW, dB, dFull
		per := C * int64(d.QKVl)
		if cfg.HasBias("qkv") {
			per += int64(d.QKVl)
		}
		n += int64(l.EndBlock-l.FirstBlock) * per // repW, repB
	}
	return 4*n + N*(3*4+8) // cross-entropy row statistics
}

func kvReplicas(cfg model.Config, tp int) int {
	if nkv := cfg.KVHeads(); tp > nkv {
		return tp / nkv
	}
	return 1
}

// sizeGroup is a tensor-parallel group known only by its size: enough to
// lay out shapes, never to communicate.
type sizeGroup int

func (g sizeGroup) Size() int { return int(g) }
func (g sizeGroup) Rank() int { return 0 }
func (g sizeGroup) AllReduceSum(context.Context, []float32) error {
	return errors.New("memplan: a planning group does not communicate")
}
func (g sizeGroup) AllReduceMax(context.Context, []float32) error {
	return errors.New("memplan: a planning group does not communicate")
}
