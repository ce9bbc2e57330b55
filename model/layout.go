package model

import (
	"fmt"

	"github.com/strand-ml/strand/parallel/tensor"
)

// Layout is the part of the model one rank holds: a tensor-parallel shard
// (through TP) of a contiguous range of blocks (a pipeline stage), or of
// several ranges (Chunks: virtual pipeline stages). The first stage owns
// the embeddings, the last the final norm and the LM head, whose weight is
// tied to the token embedding; with several stages the last stage keeps
// its own copy of wte, kept equal by all-reducing its gradient with the
// first stage (as Megatron-LM does).
type Layout struct {
	TP         tensor.Group // nil means a group of one
	FirstBlock int          // blocks [FirstBlock, EndBlock) live here (with Chunks: the first chunk's start and the last chunk's end)
	EndBlock   int
	First      bool // holds wte/wpe and embeds tokens (in its first chunk)
	Last       bool // holds ln_f and the head, and computes the loss (in its last chunk)
	// Chunks, when not empty, are the model chunks this rank holds under
	// virtual pipeline stages: ranges of global block indices in
	// ascending order, with gaps between them under interleaved
	// 1F1B (stage r
	// of p holds chunks r, r+p, ...). Blocks keep their global index in
	// parameter names (h.N), so checkpoints are by global layer and
	// reshard between any layout. Each chunk runs on its own Acts
	// (NewChunkActs); the first chunk of the First stage embeds and the
	// last chunk of the Last stage has the head. Empty: one chunk,
	// [FirstBlock, EndBlock).
	Chunks []Span
}

// Span is the half-open range [Lo, Hi) of global block indices of one
// model chunk.
type Span struct{ Lo, Hi int }

// Spans are the layout's chunks: Chunks, or the one range [FirstBlock,
// EndBlock).
func (l Layout) Spans() []Span {
	if len(l.Chunks) > 0 {
		return l.Chunks
	}
	return []Span{{l.FirstBlock, l.EndBlock}}
}

// NumBlocks is the number of blocks held here, over every chunk.
func (l Layout) NumBlocks() int {
	n := 0
	for _, s := range l.Spans() {
		n += s.Hi - s.Lo
	}
	return n
}

// blockIDs are the global indices of the blocks held here, ascending:
// local block i is global block blockIDs()[i].
func (l Layout) blockIDs() []int {
	var ids []int
	for _, s := range l.Spans() {
		for b := s.Lo; b < s.Hi; b++ {
			ids = append(ids, b)
		}
	}
	return ids
}

// Chunked is the layout of a stage holding several model chunks (virtual
// pipeline stages), spans in ascending order; first and last say whether
// it is the pipeline's first stage (embeddings) and last (head).
func Chunked(tp tensor.Group, spans []Span, first, last bool) Layout {
	if tp == nil {
		tp = tensor.Solo{}
	}
	l := Layout{TP: tp, First: first, Last: last, Chunks: append([]Span(nil), spans...)}
	if len(spans) > 0 {
		l.FirstBlock, l.EndBlock = spans[0].Lo, spans[len(spans)-1].Hi
	}
	return l
}

// Full is the layout of a single process holding the whole model.
func Full(cfg Config) Layout {
	return Layout{TP: tensor.Solo{}, FirstBlock: 0, EndBlock: cfg.NLayer, First: true, Last: true}
}

// StageBounds splits nLayer blocks into stages. With no explicit bounds the
// split is balanced (earlier stages take the remainder); explicit bounds
// list the number of blocks per stage.
func StageBounds(nLayer, stages int, perStage []int) ([]int, error) {
	if stages <= 0 {
		return nil, fmt.Errorf("pipeline stages %d must be positive", stages)
	}
	if stages > nLayer {
		return nil, fmt.Errorf("%d pipeline stages for %d layers: every stage needs at least one layer", stages, nLayer)
	}
	bounds := make([]int, stages+1)
	if len(perStage) > 0 {
		if len(perStage) != stages {
			return nil, fmt.Errorf("%d per-stage layer counts for %d stages", len(perStage), stages)
		}
		for i, n := range perStage {
			if n <= 0 {
				return nil, fmt.Errorf("stage %d has %d layers; every stage needs at least one", i, n)
			}
			bounds[i+1] = bounds[i] + n
		}
		if bounds[stages] != nLayer {
			return nil, fmt.Errorf("per-stage layer counts sum to %d, the model has %d layers", bounds[stages], nLayer)
		}
		return bounds, nil
	}
	for i := 0; i < stages; i++ {
		n := nLayer / stages
		if i < nLayer%stages {
			n++
		}
		bounds[i+1] = bounds[i] + n
	}
	return bounds, nil
}

// Stage is the layout of pipeline stage `stage` of `stages` (blocks split by
// bounds from StageBounds) with tensor-parallel group tp.
func Stage(tp tensor.Group, bounds []int, stage int) Layout {
	if tp == nil {
		tp = tensor.Solo{}
	}
	stages := len(bounds) - 1
	return Layout{TP: tp, FirstBlock: bounds[stage], EndBlock: bounds[stage+1], First: stage == 0, Last: stage == stages-1}
}

// CheckTP reports whether cfg can be split across tp tensor-parallel ranks.
func CheckTP(cfg Config, tp int) error {
	switch {
	case tp <= 0:
		return fmt.Errorf("tensor-parallel degree %d must be positive", tp)
	case cfg.NHead%tp != 0:
		return fmt.Errorf("tensor parallelism %d does not divide the %d attention heads", tp, cfg.NHead)
	case cfg.KVHeads()%tp != 0 && tp%cfg.KVHeads() != 0:
		return fmt.Errorf("tensor parallelism %d neither divides the %d kv heads (to split them) nor is a multiple of them (to replicate them)", tp, cfg.KVHeads())
	case cfg.Hidden()%tp != 0:
		return fmt.Errorf("tensor parallelism %d does not divide the MLP width %d", tp, cfg.Hidden())
	case cfg.VocabSize%tp != 0:
		return fmt.Errorf("tensor parallelism %d does not divide the vocabulary %d (vocabulary-parallel head)", tp, cfg.VocabSize)
	}
	return nil
}

func (l Layout) tp() tensor.Group {
	if l.TP == nil {
		return tensor.Solo{}
	}
	return l.TP
}

func (l Layout) validate(cfg Config) error {
	if err := CheckTP(cfg, l.tp().Size()); err != nil {
		return err
	}
	if kvReplicas(cfg, l.tp().Size()) > 1 && cfg.Position == PosALiBi {
		return fmt.Errorf("ALiBi with kv heads replicated over tensor parallelism %d is not supported", l.tp().Size())
	}
	if l.FirstBlock < 0 || l.EndBlock > cfg.NLayer || l.FirstBlock > l.EndBlock {
		return fmt.Errorf("blocks [%d, %d) outside the model's %d layers", l.FirstBlock, l.EndBlock, cfg.NLayer)
	}
	if l.First && l.FirstBlock != 0 {
		return fmt.Errorf("the first stage must start at block 0, not %d", l.FirstBlock)
	}
	if l.Last && l.EndBlock != cfg.NLayer {
		return fmt.Errorf("the last stage must end at block %d, not %d", cfg.NLayer, l.EndBlock)
	}
	if len(l.Chunks) == 0 {
		return nil
	}
	if l.FirstBlock != l.Chunks[0].Lo || l.EndBlock != l.Chunks[len(l.Chunks)-1].Hi {
		return fmt.Errorf("blocks [%d, %d) are not the chunks' range [%d, %d) (build chunked layouts with Chunked)", l.FirstBlock, l.EndBlock, l.Chunks[0].Lo, l.Chunks[len(l.Chunks)-1].Hi)
	}
	for i, c := range l.Chunks {
		if c.Lo >= c.Hi {
			return fmt.Errorf("chunk %d has no blocks ([%d, %d))", i, c.Lo, c.Hi)
		}
		if i > 0 && c.Lo < l.Chunks[i-1].Hi {
			return fmt.Errorf("chunk %d [%d, %d) does not start after chunk %d [%d, %d)", i, c.Lo, c.Hi, i-1, l.Chunks[i-1].Lo, l.Chunks[i-1].Hi)
		}
	}
	return nil
}

// kvReplicas is how many tensor-parallel ranks share each kv head: 1 when
// TP divides the kv heads (each rank holds NKV/TP of them), TP/NKV when TP
// is a multiple of them (Megatron's replication; see kvrep.go).
func kvReplicas(cfg Config, tp int) int {
	if nkv := cfg.KVHeads(); tp > nkv {
		return tp / nkv
	}
	return 1
}
