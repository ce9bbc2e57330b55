package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/strand-ml/strand/atomicfile"
	"github.com/strand-ml/strand/hf"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/tensor"
	"github.com/strand-ml/strand/safetensors"
)

// A sharded checkpoint (written when tensor or pipeline parallelism splits
// the model) holds, instead of one model.safetensors:
//
//	model-pp{P}-tp{T}.safetensors   the parameters held by stage P, TP rank T
//	                                (local shapes), written by its dp=0 rank
//	optim-pp{P}-tp{T}.safetensors   their AdamW moments
//	index.json                      every logical tensor: full shape, shard
//	                                spec and the files holding its pieces
//
// Loading assembles each logical tensor from its pieces and keeps the part
// the loading rank holds, so a checkpoint written under any layout loads
// into any other, including a single process.

// IndexFile is the name of a sharded checkpoint's index.
const IndexFile = "index.json"

// Index maps every logical tensor to the files holding it.
type Index struct {
	Format  string                 `json:"format"`
	Step    int                    `json:"step"`
	Layout  mesh.Mesh              `json:"layout"`
	Tensors map[string]IndexTensor `json:"tensors"`
}

// IndexTensor is one logical parameter.
type IndexTensor struct {
	Shape  []int            `json:"shape"`
	Shard  tensor.ShardSpec `json:"shard"`
	Pieces []Piece          `json:"pieces"`
}

// Piece is one TP rank's part of a tensor, or (ZeRO-2/3 checkpoints,
// zeroshard.go) one data-parallel rank's range of that part.
type Piece struct {
	File   string `json:"file"`
	TPRank int    `json:"tp_rank"`
	TPSize int    `json:"tp_size"`
	// Range, when set, is [lo, hi): the elements of the TP rank's part,
	// flattened, that this piece holds; the pieces of all data-parallel
	// ranks of a shard group together cover the part.
	Range []int `json:"range,omitempty"`
	// Name, when set, is the piece's name in the file: a rank that owns
	// several ranges of one tensor (the chunks of a vocabulary weight)
	// writes the second and later as NAME@K (pieceName).
	Name string `json:"name,omitempty"`
}

// pieceName is the name in a ZeRO shard file of a rank's k-th range of
// tensor name; logicalName undoes it.
func pieceName(name string, k int) string {
	if k == 0 {
		return name
	}
	return fmt.Sprintf("%s@%d", name, k)
}

func logicalName(inFile string) string {
	name, _, _ := strings.Cut(inFile, "@")
	return name
}

const indexFormat = "strand-sharded-1"

func shardFiles(c mesh.Coord) (modelFile, optimFile string) {
	return fmt.Sprintf("model-pp%d-tp%d.safetensors", c.PP, c.TP), fmt.Sprintf("optim-pp%d-tp%d.safetensors", c.PP, c.TP)
}

// WriteShard writes the parameters (and, when m1/v1 are not nil, the AdamW
// moments laid out like the parameters) that the rank at coord holds into
// dir. Only dp=0 ranks need to call it: data-parallel replicas are equal.
// The last stage's copy of the tied embedding is skipped (the first stage
// writes wte).
func WriteShard(dir string, coord mesh.Coord, m *model.GPT, m1, v1 []float32, optStep int) error {
	mf, of := shardFiles(coord)
	meta := map[string]string{"pp": strconv.Itoa(coord.PP), "tp": strconv.Itoa(coord.TP), "tp_size": strconv.Itoa(m.Layout.TP.Size())}
	var params, moments []safetensors.Tensor
	for _, p := range m.Params.List {
		if p.TiedCopy {
			continue
		}
		spec, _ := json.Marshal(p.Shard)
		meta["shard."+p.Name] = string(spec)
		meta["shape."+p.Name] = fmt.Sprint(p.Shape)
		params = append(params, safetensors.F32View(p.Name, p.Local, p.Data))
		if m1 != nil {
			moments = append(moments,
				safetensors.F32View("exp_avg."+p.Name, p.Local, m1[p.Offset:p.Offset+p.Size()]),
				safetensors.F32View("exp_avg_sq."+p.Name, p.Local, v1[p.Offset:p.Offset+p.Size()]))
		}
	}
	if err := safetensors.Write(filepath.Join(dir, mf), params, meta); err != nil {
		return err
	}
	if m1 != nil {
		return safetensors.Write(filepath.Join(dir, of), moments, map[string]string{"step": strconv.Itoa(optStep)})
	}
	return nil
}

// WriteIndex builds index.json from the shard files in dir (after every
// rank wrote its shard) and writes config.json.
func WriteIndex(dir string, step int, layout mesh.Mesh, cfg model.Config) error {
	return writeIndex(dir, step, layout, cfg, 0)
}

// writeIndex is WriteIndex over shards files per (stage, TP rank) written
// by WriteZeroShard, or (shards 0) over WriteShard's.
func writeIndex(dir string, step int, layout mesh.Mesh, cfg model.Config, shards int) error {
	idx := Index{Format: indexFormat, Step: step, Layout: layout, Tensors: map[string]IndexTensor{}}
	for pp := 0; pp < layout.PP; pp++ {
		for tp := 0; tp < layout.TP; tp++ {
			files := []string{}
			if shards == 0 {
				mf, _ := shardFiles(mesh.Coord{PP: pp, TP: tp})
				files = append(files, mf)
			}
			for dp := 0; dp < shards; dp++ {
				mf, _ := zeroShardFiles(mesh.Coord{PP: pp, TP: tp}, dp)
				files = append(files, mf)
			}
			for _, mf := range files {
				if err := indexFile(&idx, dir, mf, tp, layout.TP); err != nil {
					return err
				}
			}
		}
	}
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, IndexFile), append(raw, '\n')); err != nil {
		return err
	}
	cfgRaw, err := json.MarshalIndent(hfConfig(cfg), "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, ConfigFile), append(cfgRaw, '\n'))
}

// indexFile adds the tensors of shard file mf (of TP rank tp) to idx.
func indexFile(idx *Index, dir, mf string, tp, tpSize int) error {
	infos, meta, err := safetensors.Inspect(filepath.Join(dir, mf))
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	for _, in := range infos {
		var spec tensor.ShardSpec
		if err := json.Unmarshal([]byte(meta["shard."+in.Name]), &spec); err != nil {
			return fmt.Errorf("index: %s: shard spec of %q: %w", mf, in.Name, err)
		}
		name := logicalName(in.Name)
		t := idx.Tensors[name]
		if t.Shape == nil {
			full, err := parseShape(meta["shape."+in.Name])
			if err != nil {
				return fmt.Errorf("index: %s: shape of %q: %w", mf, in.Name, err)
			}
			t.Shape, t.Shard = full, spec
		}
		pc := Piece{File: mf, TPRank: tp, TPSize: tpSize}
		if name != in.Name {
			pc.Name = in.Name
		}
		if r, ok := meta["range."+in.Name]; ok {
			var lo, hi int
			if _, err := fmt.Sscanf(r, "%d %d", &lo, &hi); err != nil || hi-lo != model.Numel(in.Shape) {
				return fmt.Errorf("index: %s: range of %q is %q for %v elements", mf, in.Name, r, in.Shape)
			}
			pc.Range = []int{lo, hi}
		}
		t.Pieces = append(t.Pieces, pc)
		idx.Tensors[name] = t
	}
	return nil
}

func parseShape(s string) ([]int, error) {
	var out []int
	raw := []byte(s)
	if len(raw) < 2 || raw[0] != '[' || raw[len(raw)-1] != ']' {
		return nil, fmt.Errorf("malformed shape %q", s)
	}
	n, cur := 0, false
	for _, c := range raw[1 : len(raw)-1] {
		switch {
		case c >= '0' && c <= '9':
			n, cur = n*10+int(c-'0'), true
		case c == ' ':
			if cur {
				out = append(out, n)
			}
			n, cur = 0, false
		default:
			return nil, fmt.Errorf("malformed shape %q", s)
		}
	}
	if cur {
		out = append(out, n)
	}
	return out, nil
}

// Seal checksums every file of the temporary checkpoint directory tmp,
// writes commit.json and renames it into run/checkpoints/step_N. Call it
// once, after every rank has written its part.
func Seal(run, tmp string, step, keep int) (string, error) {
	if err := writeCommit(tmp, step); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	parent := filepath.Join(run, checkpointDir)
	final := filepath.Join(parent, fmt.Sprintf("%s%06d", stepPrefix, step))
	if _, err := os.Stat(final); err == nil {
		old := final + ".old"
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return "", err
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	if err := syncDir(parent); err != nil {
		return "", err
	}
	if keep > 0 {
		if err := rotate(parent, keep); err != nil {
			return final, err
		}
	}
	return final, nil
}

// TempDir is the shared temporary directory every rank writes step's
// checkpoint into (a fixed name, so ranks agree without talking).
func TempDir(run string, step int) string {
	return filepath.Join(run, checkpointDir, fmt.Sprintf(".tmp-%s%06d", stepPrefix, step))
}

// ReadIndex reads a sharded checkpoint's index, or returns (nil, nil) for
// a checkpoint with a single model.safetensors.
func ReadIndex(dir string) (*Index, error) {
	raw, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var idx Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, IndexFile), err)
	}
	if idx.Format != indexFormat {
		return nil, fmt.Errorf("%s: unknown format %q", filepath.Join(dir, IndexFile), idx.Format)
	}
	return &idx, nil
}

// fileCache opens each shard file once per load.
type fileCache struct {
	dir   string
	files map[string]*safetensors.File
}

func (c *fileCache) open(name string) (*safetensors.File, error) {
	if f, ok := c.files[name]; ok {
		return f, nil
	}
	f, err := safetensors.Read(filepath.Join(c.dir, name))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", filepath.Join(c.dir, name), err)
	}
	c.files[name] = f
	return f, nil
}

// assemble rebuilds the full logical tensor prefix+name from its pieces.
func (idx *Index) assemble(c *fileCache, name, prefix string, fileOf func(Piece) string) ([]float32, []int, error) {
	t, ok := idx.Tensors[name]
	if !ok {
		return nil, nil, fmt.Errorf("tensor %q is missing from the checkpoint index", name)
	}
	full := make([]float32, model.Numel(t.Shape))
	parts := map[int][]float32{} // ZeRO pieces, assembled per TP rank first
	for _, pc := range t.Pieces {
		f, err := c.open(fileOf(pc))
		if err != nil {
			return nil, nil, err
		}
		inFile := name
		if pc.Name != "" {
			inFile = pc.Name
		}
		data, shape, err := f.Float32(prefix + inFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", fileOf(pc), err)
		}
		want, err := t.Shard.LocalShape(t.Shape, pc.TPSize)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: %w", fileOf(pc), prefix+name, err)
		}
		if pc.Range != nil {
			n := model.Numel(want)
			lo, hi := pc.Range[0], pc.Range[1]
			if lo < 0 || hi > n || len(data) != hi-lo {
				return nil, nil, fmt.Errorf("%s: tensor %q holds %d values for range [%d, %d) of %d", fileOf(pc), prefix+name, len(data), lo, hi, n)
			}
			if parts[pc.TPRank] == nil {
				parts[pc.TPRank] = make([]float32, n)
			}
			copy(parts[pc.TPRank][lo:hi], data)
			continue
		}
		if !slices.Equal(shape, want) {
			return nil, nil, fmt.Errorf("%s: tensor %q has shape %v, want %v", fileOf(pc), prefix+name, shape, want)
		}
		t.Shard.Insert(full, data, t.Shape, pc.TPRank, pc.TPSize)
	}
	for _, pc := range t.Pieces {
		if part := parts[pc.TPRank]; part != nil {
			t.Shard.Insert(full, part, t.Shape, pc.TPRank, pc.TPSize)
			delete(parts, pc.TPRank)
		}
	}
	return full, t.Shape, nil
}

// loadSharded fills dst (laid out like m's parameters) from the sharded
// checkpoint: parameters (prefix "") or moments ("exp_avg.", "exp_avg_sq.").
func loadSharded(dir string, idx *Index, m *model.GPT, prefix string, dst []float32) error {
	c := &fileCache{dir: dir, files: map[string]*safetensors.File{}}
	fileOf := func(p Piece) string { return p.File }
	if prefix != "" {
		fileOf = func(p Piece) string { return optimFileOf(p.File) }
	}
	for _, p := range m.Params.List {
		full, shape, err := idx.assemble(c, p.Name, prefix, fileOf)
		if err != nil {
			return err
		}
		if !slices.Equal(shape, p.Shape) {
			return fmt.Errorf("tensor %q has shape %v in the checkpoint, the model wants %v", p.Name, shape, p.Shape)
		}
		m.Params.SetFull(p, dst[p.Offset:p.Offset+p.Size()], full)
	}
	return nil
}

// Tensors lists the logical tensors of a checkpoint with their full shapes
// (for inspection), whichever format it has.
func Tensors(dir string) (map[string][]int, error) {
	if hf.IsDir(dir) {
		return hf.Tensors(dir)
	}
	idx, err := ReadIndex(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	if idx != nil {
		for n, t := range idx.Tensors {
			out[n] = t.Shape
		}
		return out, nil
	}
	infos, _, err := safetensors.Inspect(filepath.Join(dir, ModelFile))
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		out[in.Name] = in.Shape
	}
	return out, nil
}

// SortedNames returns the keys of a tensor map in order.
func SortedNames(m map[string][]int) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
