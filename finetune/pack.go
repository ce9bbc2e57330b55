package finetune

import (
	"fmt"

	"github.com/strand-ml/strand/model"
)

const ignoreIndex = model.IgnoreIndex

// Packed is a dataset cut into rows of Seq positions.
type Packed struct {
	Seq      int
	Rows     int
	Inputs   []int32 // (Rows, Seq)
	Targets  []int32 // (Rows, Seq) IgnoreIndex on prompts and padding
	Segments []int32 // (Rows, Seq) example index within its row; padding has its own
	// accounting
	Examples  int // examples placed
	Truncated int // examples longer than Seq cut to Seq positions
	Dropped   int // examples with no trained target left after truncation
	Padding   int // padding positions
}

// Pack places examples in rows of seq positions in order. With pack, an
// example goes into the current row when it fits and a new row otherwise;
// without, every example gets its own row. An example longer than seq keeps
// its first seq positions (counted in Truncated; one left with nothing to
// train is counted in Dropped). pad is the padding token (EOS).
func Pack(examples []Example, seq int, pack bool, pad int32) (*Packed, error) {
	if seq <= 0 {
		return nil, fmt.Errorf("pack: sequence length %d must be positive", seq)
	}
	p := &Packed{Seq: seq}
	used := seq // positions filled in the current row; seq forces a new row
	seg := int32(0)
	in, tg := make([]int32, seq), make([]int32, seq)
	for _, ex := range examples {
		n := ex.Len()
		if n < 1 {
			p.Dropped++
			continue
		}
		if n > seq {
			n = seq
			p.Truncated++
		}
		ex.Inputs(in[:n], tg[:n]) // Inputs reads only the first n+1 tokens' worth
		trained := false
		for _, y := range tg[:n] {
			if y != ignoreIndex {
				trained = true
				break
			}
		}
		if !trained {
			p.Dropped++
			continue
		}
		if !pack || used+n > seq {
			p.newRow(used, seg, pad)
			used, seg = 0, 0
		}
		base := (p.Rows - 1) * seq
		copy(p.Inputs[base+used:], in[:n])
		copy(p.Targets[base+used:], tg[:n])
		for i := 0; i < n; i++ {
			p.Segments[base+used+i] = seg
		}
		used += n
		seg++
		p.Examples++
	}
	p.finishRow(used, seg, pad)
	if p.Rows == 0 {
		return nil, fmt.Errorf("pack: no example has a trained token")
	}
	return p, nil
}

// newRow pads the current row (if any) and appends an empty one.
func (p *Packed) newRow(used int, seg, pad int32) {
	p.finishRow(used, seg, pad)
	p.Rows++
	p.Inputs = append(p.Inputs, make([]int32, p.Seq)...)
	p.Targets = append(p.Targets, make([]int32, p.Seq)...)
	p.Segments = append(p.Segments, make([]int32, p.Seq)...)
}

func (p *Packed) finishRow(used int, seg, pad int32) {
	if p.Rows == 0 || used >= p.Seq {
		return
	}
	base := (p.Rows - 1) * p.Seq
	for i := used; i < p.Seq; i++ {
		p.Inputs[base+i], p.Targets[base+i], p.Segments[base+i] = pad, ignoreIndex, seg
	}
	p.Padding += p.Seq - used
}
