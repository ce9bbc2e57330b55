package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
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

// zeroPiece is one owned range's part of a parameter: flat elements
// [At, At+N) of the parameter buffer, [Lo, Lo+N) of the parameter itself,
// and [K, K+N) of the packed moments, named Name in the files (the
// parameter's name, NAME@K for its second and later pieces).
type zeroPiece struct {
	p         *model.Param
	Name      string
	At, Lo, K int
	N         int
}

// pieces walks m's parameters against the owned ranges (in order); a
// parameter cut into several units (a vocabulary weight's chunks) has a
// piece in each of its owned ranges.
func (s ZeroShard) pieces(m *model.GPT) []zeroPiece {
	var out []zeroPiece
	packed, r := 0, 0 // moments index of owned range r's start
	for _, p := range m.Params.List {
		lo, hi := p.Offset, p.Offset+p.Size()
		for r < len(s.Owned) && s.Owned[r][1] <= lo {
			packed += s.Owned[r][1] - s.Owned[r][0]
			r++
		}
		k, at := 0, packed
		for q := r; q < len(s.Owned) && s.Owned[q][0] < hi; q++ {
			a, b := max(lo, s.Owned[q][0]), min(hi, s.Owned[q][1])
			if a < b {
				out = append(out, zeroPiece{p: p, Name: pieceName(p.Name, k), At: a, Lo: a - lo, K: at + a - s.Owned[q][0], N: b - a})
				k++
			}
			at += s.Owned[q][1] - s.Owned[q][0]
		}
	}
	return out
}

// WriteZeroShard writes s's pieces of m's parameters and moments into
// dir. The last stage's copy of the tied embedding is skipped (the first
// stage writes wte).
func WriteZeroShard(dir string, m *model.GPT, s ZeroShard) error {
	mf, of := zeroShardFiles(s.Coord, s.Rank)
	meta := map[string]string{"pp": strconv.Itoa(s.Coord.PP), "tp": strconv.Itoa(s.Coord.TP), "tp_size": strconv.Itoa(m.Layout.TP.Size()), "dp": strconv.Itoa(s.Rank)}
	var params, moments []safetensors.Tensor
	for _, pc := range s.pieces(m) {
		p := pc.p
		if p.TiedCopy {
			continue
		}
		spec, _ := json.Marshal(p.Shard)
		meta["shard."+pc.Name] = string(spec)
		meta["shape."+pc.Name] = fmt.Sprint(p.Shape)
		meta["range."+pc.Name] = fmt.Sprintf("%d %d", pc.Lo, pc.Lo+pc.N)
		shape := []int{pc.N}
		params = append(params, safetensors.F32View(pc.Name, shape, s.Params[pc.At:pc.At+pc.N]))
		moments = append(moments,
			safetensors.F32View("exp_avg."+pc.Name, shape, s.M[pc.K:pc.K+pc.N]),
			safetensors.F32View("exp_avg_sq."+pc.Name, shape, s.V[pc.K:pc.K+pc.N]))
	}
	if err := safetensors.Write(filepath.Join(dir, mf), params, meta); err != nil {
		return err
	}
	return safetensors.Write(filepath.Join(dir, of), moments, map[string]string{"step": strconv.Itoa(s.OptStep)})
}

// ReadZeroShard fills s.Params (in the owned ranges), s.M and s.V from the
// files s's rank of this layout wrote into dir, and returns the optimizer
// step. ok is false, and nothing changed, when the files do not exist or
// cut the parameters otherwise (another layout or stage wrote them: load
// those with LoadModel and LoadMoments).
func ReadZeroShard(dir string, m *model.GPT, s ZeroShard) (step int, ok bool, err error) {
	mf, of := zeroShardFiles(s.Coord, s.Rank)
	if _, err := os.Stat(filepath.Join(dir, mf)); err != nil {
		return 0, false, nil
	}
	fm, err := safetensors.Read(filepath.Join(dir, mf))
	if err != nil {
		return 0, false, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	fo, err := safetensors.Read(filepath.Join(dir, of))
	if err != nil {
		return 0, false, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	meta := fm.Metadata()
	pcs := s.pieces(m)
	// check every piece first, so a mismatch changes nothing
	for _, pc := range pcs {
		if pc.p.TiedCopy || meta["range."+pc.Name] != fmt.Sprintf("%d %d", pc.Lo, pc.Lo+pc.N) {
			// (the last stage's copy of wte is not in the files: the
			// layout-changing path loads it from the first stage's wte)
			return 0, false, nil
		}
	}
	for _, pc := range pcs {
		name := pc.Name
		for _, x := range []struct {
			f    *safetensors.File
			name string
			into []float32
		}{{fm, name, s.Params[pc.At : pc.At+pc.N]}, {fo, "exp_avg." + name, s.M[pc.K : pc.K+pc.N]}, {fo, "exp_avg_sq." + name, s.V[pc.K : pc.K+pc.N]}} {
			v, _, err := x.f.Float32(x.name)
			if err != nil || len(v) != len(x.into) {
				return 0, false, fmt.Errorf("checkpoint %s: piece %s: %d values for %d, %v", dir, x.name, len(v), len(x.into), err)
			}
			copy(x.into, v)
		}
	}
	if step, err = strconv.Atoi(fo.Metadata()["step"]); err != nil {
		return 0, false, fmt.Errorf("checkpoint %s: %s has no step: %w", dir, of, err)
	}
	return step, true, nil
}

// WriteZeroIndex is WriteIndex for a checkpoint of WriteZeroShard files,
// shards per stage and TP rank.
func WriteZeroIndex(dir string, step int, layout mesh.Mesh, cfg model.Config, shards int) error {
	if shards <= 0 {
		return fmt.Errorf("index: %d shards per stage", shards)
	}
	return writeIndex(dir, step, layout, cfg, shards)
}
