package checkpoint

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/safetensors"
)

// A ZeRO-2/3 checkpoint is a sharded checkpoint (sharded.go) in which
// every rank of a shard group writes the pieces it owns, without any
// gather:
//
//	model-pp{P}-tp{T}-dp{D}.safetensors   rank D's owned range of each
//	                                      parameter (1-D, metadata
//	                                      "range.NAME" = "lo hi": elements
//	                                      of the TP-local tensor, flattened)
//	optim-pp{P}-tp{T}-dp{D}.safetensors   the AdamW moments of those ranges
//
// The index lists every range as a Piece, so the loaders (assemble)
// rebuild any tensor from them and the checkpoint loads into any layout
// and ZeRO stage, a single process included.

// zeroShardFiles names rank dp's files of stage and TP rank c.
func zeroShardFiles(c mesh.Coord, dp int) (modelFile, optimFile string) {
	return fmt.Sprintf("model-pp%d-tp%d-dp%d.safetensors", c.PP, c.TP, dp), fmt.Sprintf("optim-pp%d-tp%d-dp%d.safetensors", c.PP, c.TP, dp)
}

// optimFileOf is the optimizer file beside model file mf.
func optimFileOf(mf string) string { return "optim-" + strings.TrimPrefix(mf, "model-") }

// ZeroShard is what one rank of a shard group writes.
type ZeroShard struct {
	Coord  mesh.Coord // stage and TP rank
	Rank   int        // rank in the shard group
	Owned  [][2]int   // the owned ranges of the flat parameter buffer, in order
	Params []float32  // laid out like the model's parameters; read in the owned ranges
	// M and V are the AdamW moments packed in owned order: the k-th owned
	// element (counting through Owned) is M[k].
	M, V    []float32
	OptStep int
}

// WriteZeroShard writes s's pieces of m's parameters and moments into
// dir. The last stage's copy of the tied embedding is skipped (the first
// stage writes wte).
func WriteZeroShard(dir string, m *model.GPT, s ZeroShard) error {
	mf, of := zeroShardFiles(s.Coord, s.Rank)
	meta := map[string]string{"pp": strconv.Itoa(s.Coord.PP), "tp": strconv.Itoa(s.Coord.TP), "tp_size": strconv.Itoa(m.Layout.TP.Size()), "dp": strconv.Itoa(s.Rank)}
	var params, moments []safetensors.Tensor
	packed := 0 // moments index of the current owned range's start
	r := 0
	for _, p := range m.Params.List {
		lo, hi := p.Offset, p.Offset+p.Size()
		for r < len(s.Owned) && s.Owned[r][1] <= lo {
			packed += s.Owned[r][1] - s.Owned[r][0]
			r++
		}
		if r == len(s.Owned) {
			break
		}
		a, b := max(lo, s.Owned[r][0]), min(hi, s.Owned[r][1])
		if a >= b || p.TiedCopy {
			continue
		}
		spec, _ := json.Marshal(p.Shard)
		meta["shard."+p.Name] = string(spec)
		meta["shape."+p.Name] = fmt.Sprint(p.Shape)
		meta["range."+p.Name] = fmt.Sprintf("%d %d", a-lo, b-lo)
		shape := []int{b - a}
		params = append(params, safetensors.F32View(p.Name, shape, s.Params[a:b]))
		k := packed + a - s.Owned[r][0]
		moments = append(moments,
			safetensors.F32View("exp_avg."+p.Name, shape, s.M[k:k+b-a]),
			safetensors.F32View("exp_avg_sq."+p.Name, shape, s.V[k:k+b-a]))
	}
	if err := safetensors.Write(filepath.Join(dir, mf), params, meta); err != nil {
		return err
	}
	return safetensors.Write(filepath.Join(dir, of), moments, map[string]string{"step": strconv.Itoa(s.OptStep)})
}

// WriteZeroIndex is WriteIndex for a checkpoint of WriteZeroShard files,
// shards per stage and TP rank.
func WriteZeroIndex(dir string, step int, layout mesh.Mesh, cfg model.Config, shards int) error {
	if shards <= 0 {
		return fmt.Errorf("index: %d shards per stage", shards)
	}
	return writeIndex(dir, step, layout, cfg, shards)
}
