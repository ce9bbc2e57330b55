package tensor

import "fmt"

// ShardSpec says how a logical tensor is divided across the TP group.
// Axis < 0 means replicated (every rank holds the whole tensor). Otherwise
// the tensor's extent along Axis is viewed as Parts equal chunks laid side
// by side (for example q|k|v in a fused attention projection, Parts = 3),
// each chunk is cut into Size equal pieces, and rank r holds piece r of
// every chunk, concatenated in chunk order.
type ShardSpec struct {
	Axis  int `json:"axis"`
	Parts int `json:"parts,omitempty"`
}

// Replicated is the spec of a tensor every rank holds whole.
var Replicated = ShardSpec{Axis: -1}

// Split returns the spec for a tensor split along axis in parts chunks.
func Split(axis, parts int) ShardSpec {
	if parts < 1 {
		parts = 1
	}
	return ShardSpec{Axis: axis, Parts: parts}
}

// IsReplicated reports whether every rank holds the whole tensor.
func (s ShardSpec) IsReplicated() bool { return s.Axis < 0 }

func (s ShardSpec) parts() int {
	if s.Parts < 1 {
		return 1
	}
	return s.Parts
}

// LocalShape is the shape of one rank's shard of a full tensor, or an error
// when the axis does not divide evenly.
func (s ShardSpec) LocalShape(full []int, size int) ([]int, error) {
	out := append([]int(nil), full...)
	if s.IsReplicated() || size == 1 {
		return out, nil
	}
	if s.Axis >= len(full) {
		return nil, fmt.Errorf("shard axis %d of a %d-d tensor", s.Axis, len(full))
	}
	d := full[s.Axis]
	if d%(s.parts()*size) != 0 {
		return nil, fmt.Errorf("dimension %d of size %d does not split into %d parts x %d ranks", s.Axis, d, s.parts(), size)
	}
	out[s.Axis] = d / size
	return out, nil
}

// Ranges calls f for each contiguous run of the full tensor that rank holds,
// in the order they are stored in the shard: f(fullOffset, localOffset, n).
func (s ShardSpec) Ranges(full []int, rank, size int, f func(fullOff, localOff, n int)) {
	total := 1
	for _, d := range full {
		total *= d
	}
	if s.IsReplicated() || size == 1 {
		f(0, 0, total)
		return
	}
	outer := 1 // product of dimensions before Axis
	for _, d := range full[:s.Axis] {
		outer *= d
	}
	inner := 1 // product of dimensions after Axis
	for _, d := range full[s.Axis+1:] {
		inner *= d
	}
	d := full[s.Axis]
	parts := s.parts()
	chunk := d / parts    // one part's extent along Axis
	piece := chunk / size // one rank's extent within a part
	local := 0
	for o := 0; o < outer; o++ {
		for p := 0; p < parts; p++ {
			start := (o*d + p*chunk + rank*piece) * inner
			f(start, local, piece*inner)
			local += piece * inner
		}
	}
}

// Extract copies rank's shard of full into local.
func (s ShardSpec) Extract(local, full []float32, shape []int, rank, size int) {
	s.Ranges(shape, rank, size, func(fo, lo, n int) { copy(local[lo:lo+n], full[fo:fo+n]) })
}

// Insert copies rank's shard local into its place in full.
func (s ShardSpec) Insert(full, local []float32, shape []int, rank, size int) {
	s.Ranges(shape, rank, size, func(fo, lo, n int) { copy(full[fo:fo+n], local[lo:lo+n]) })
}
