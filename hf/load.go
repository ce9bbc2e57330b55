package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/safetensors"
)

// File names of a Hugging Face model directory.
const (
	SingleFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// index is model.safetensors.index.json.
type index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// openFiles opens the directory's safetensors files (headers only) and
// returns, for every tensor, the reader holding it.
func openFiles(dir string) (readers []*safetensors.Reader, where map[string]*safetensors.Reader, err error) {
	closeAll := func() {
		for _, r := range readers {
			r.Close()
		}
	}
	where = map[string]*safetensors.Reader{}
	ipath := filepath.Join(dir, IndexFile)
	raw, err := os.ReadFile(ipath)
	switch {
	case err == nil:
		var idx index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", ipath, err)
		}
		if len(idx.WeightMap) == 0 {
			return nil, nil, fmt.Errorf("%s: empty weight_map", ipath)
		}
		files := map[string]*safetensors.Reader{}
		names := make([]string, 0, len(idx.WeightMap))
		for n := range idx.WeightMap {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			f := idx.WeightMap[n]
			if _, ok := files[f]; ok {
				continue
			}
			if filepath.Base(f) != f {
				closeAll()
				return nil, nil, fmt.Errorf("%s: shard %q is not a file name in the directory", ipath, f)
			}
			r, err := safetensors.OpenReader(filepath.Join(dir, f))
			if err != nil {
				closeAll()
				if errors.Is(err, fs.ErrNotExist) {
					return nil, nil, fmt.Errorf("shard %s listed in %s is missing", f, ipath)
				}
				return nil, nil, err
			}
			files[f] = r
			readers = append(readers, r)
		}
		for _, n := range names {
			r := files[idx.WeightMap[n]]
			if _, ok := r.Info(n); !ok {
				closeAll()
				return nil, nil, fmt.Errorf("tensor %s is listed in %s under %s, which does not hold it", n, ipath, idx.WeightMap[n])
			}
			where[n] = r
		}
		// a tensor in a shard but not in the index is still a tensor of
		// the checkpoint: the extra-tensor check below names it
		for _, r := range readers {
			for _, in := range r.Infos() {
				if _, ok := where[in.Name]; !ok {
					where[in.Name] = r
				}
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		r, err := safetensors.OpenReader(filepath.Join(dir, SingleFile))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("%s holds neither %s nor %s", dir, SingleFile, IndexFile)
			}
			return nil, nil, err
		}
		readers = append(readers, r)
		for _, in := range r.Infos() {
			where[in.Name] = r
		}
	default:
		return nil, nil, err
	}
	return readers, where, nil
}

// Load copies the tensors of the Hugging Face directory dir into m, which
// may hold any shard of any layout of the model dir/config.json describes
// (build it from ReadConfig). Every tensor is checked (present, no extra,
// float dtype, shape) before any is read; then each is read from its
// shard file, converted to float32 and placed in m's parameters, one at a
// time.
func Load(dir string, m *model.GPT) error {
	if err := load(dir, m); err != nil {
		return fmt.Errorf("hf %s: %w", dir, err)
	}
	return nil
}

func load(dir string, m *model.GPT) error {
	readers, where, err := openFiles(dir)
	if err != nil {
		return err
	}
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	ps := m.Params
	if m.LoRA != nil {
		ps = m.LoRA.Base
	}
	es := entries(m.Config)
	known := make(map[string]bool, len(es))
	var need []entry
	for _, e := range es {
		known[e.name] = true
		if _, ok := ps.Lookup(e.param); ok {
			need = append(need, e)
		}
	}
	var extra []string
	for n := range where {
		if !known[n] && !ignorable(n) && !(n == "lm_head.weight" && !m.Config.UntiedHead) {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("tensor %s is not a parameter of this %d-layer model (%d unexpected tensors)", extra[0], m.Config.NLayer, len(extra))
	}
	for _, e := range need {
		r, ok := where[e.name]
		if !ok {
			return fmt.Errorf("tensor %s is missing", e.name)
		}
		in, _ := r.Info(e.name)
		switch in.DType {
		case safetensors.F32, safetensors.BF16, safetensors.F16, safetensors.F64:
		default:
			return fmt.Errorf("tensor %s has dtype %s, want F32, BF16 or F16", e.name, in.DType)
		}
		if !slices.Equal(in.Shape, e.shape) {
			return fmt.Errorf("tensor %s has shape %v, expected %v", e.name, in.Shape, e.shape)
		}
	}
	// pieces left per parameter, and the full tensors being assembled for
	// parameters this rank holds only a shard of
	left := map[string]int{}
	for _, e := range need {
		left[e.param]++
	}
	for _, p := range ps.List {
		if left[p.Name] == 0 {
			return fmt.Errorf("parameter %s of the model has no tensor in the %s layout (the model was not built from this directory's config.json)", p.Name, "Hugging Face")
		}
	}
	assembling := map[string][]float32{}
	// read file by file, each in offset order
	order := make(map[*safetensors.Reader][]entry)
	for _, e := range need {
		order[where[e.name]] = append(order[where[e.name]], e)
	}
	for _, r := range readers {
		list := order[r]
		sort.Slice(list, func(i, j int) bool {
			a, _ := r.Info(list[i].name)
			b, _ := r.Info(list[j].name)
			return a.Offset < b.Offset
		})
		for _, e := range list {
			data, err := r.Float32(e.name)
			if err != nil {
				return err
			}
			p, _ := ps.Lookup(e.param)
			full := p.Data
			if len(p.Data) != model.Numel(p.Shape) {
				if assembling[e.param] == nil {
					assembling[e.param] = make([]float32, model.Numel(p.Shape))
				}
				full = assembling[e.param]
			}
			e.move(full, data, true)
			left[e.param]--
			if left[e.param] == 0 && len(p.Data) != model.Numel(p.Shape) {
				ps.SetFull(p, p.Data, full)
				delete(assembling, e.param)
			}
		}
	}
	return nil
}

// Tensors lists the tensors of the Hugging Face directory dir with their
// shapes, reading only the headers.
func Tensors(dir string) (map[string][]int, error) {
	readers, where, err := openFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("hf %s: %w", dir, err)
	}
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	out := make(map[string][]int, len(where))
	for n, r := range where {
		in, _ := r.Info(n)
		out[n] = in.Shape
	}
	return out, nil
}
