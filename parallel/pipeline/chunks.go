package pipeline

import "fmt"

// ChunkLayers is one model chunk held by a stage: its global chunk index and
// the half-open range [Lo, Hi) of global layer (block) indices it runs.
type ChunkLayers struct {
	Global int
	Lo, Hi int
}

// Chunks cuts layers blocks into stages*virtual chunks of consecutive
// layers, as evenly as possible (the first layers % (stages*virtual)
// chunks get one more; with virtual = 1 this is model.StageBounds' split),
// and returns each stage's chunks in local order: stage r's chunk c is
// global chunk c*stages + r (Megatron's interleaving, so consecutive chunks
// sit on consecutive stages). Layer indices are global, so parameters and
// checkpoints name a layer the same way in every (stages, virtual) layout.
// The first stage's chunk 0 also holds the embeddings and the last stage's
// last chunk the final norm and head.
func Chunks(stages, virtual, layers int) ([][]ChunkLayers, error) {
	if stages <= 0 || virtual <= 0 {
		return nil, fmt.Errorf("pipeline: %d stages x %d virtual stages", stages, virtual)
	}
	n := stages * virtual
	if layers < n {
		return nil, fmt.Errorf("pipeline: %d layers for %d stages x %d virtual stages: every chunk needs at least one layer", layers, stages, virtual)
	}
	out := make([][]ChunkLayers, stages)
	lo := 0
	for g := 0; g < n; g++ {
		k := layers / n
		if g < layers%n {
			k++
		}
		out[g%stages] = append(out[g%stages], ChunkLayers{Global: g, Lo: lo, Hi: lo + k})
		lo += k
	}
	return out, nil
}
