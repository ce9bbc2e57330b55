package data

import (
	"fmt"
	"unsafe"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/numeric"
)

// fp8 gradient compression. A sum of fp8 values is not an fp8 value, so
// fp8 buckets are not reduced on the wire: each rank quantizes its bucket
// with one scale (per-bucket amax / the format's largest finite value,
// numeric.Quantize), the ranks all-gather the quantized buckets and their
// scales, and every rank dequantizes and sums them locally in rank order
// 0, 1, ..., P-1. Every rank thus computes the same sum to the bit, and a
// rerun gives the same result. On the wire a bucket of n gradients costs n
// bytes per rank (a float32 ring all-reduce moves about 8n), at the price
// of fp8's precision: E4M3 keeps 3 mantissa bits (relative error up to
// 2^-4), E5M2 2 bits with more range.
//
// Layout of a bucket's all-gather buffer (opaque 16-bit words, sent as a
// BF16 buffer because the collectives have no byte type): P equal slots,
// slot r = [scale of rank r as 2 words | n fp8 codes, padded to even].
type fp8Wire struct {
	format numeric.FP8
	wire   [][]uint16 // per bucket: P slots
	slot   []int      // per bucket: words per slot
}

// ParseFP8 maps a --grad-compress style name to a format: "fp8" and
// "e4m3" are E4M3, "e5m2" is E5M2.
func ParseFP8(name string) (numeric.FP8, error) {
	switch name {
	case "fp8", "e4m3", "fp8-e4m3":
		return numeric.E4M3, nil
	case "e5m2", "fp8-e5m2":
		return numeric.E5M2, nil
	}
	return 0, fmt.Errorf("fp8 format %q is not one of e4m3, e5m2", name)
}

func newFP8Wire(format numeric.FP8, bounds []int, ranks int) *fp8Wire {
	w := &fp8Wire{format: format}
	for i := 0; i+1 < len(bounds); i++ {
		n := bounds[i+1] - bounds[i]
		words := 2 + (n+1)/2
		w.slot = append(w.slot, words)
		w.wire = append(w.wire, make([]uint16, ranks*words))
	}
	return w
}

// slotOf returns rank r's slot of bucket i: its scale word pair and codes.
func (w *fp8Wire) slotOf(i, r, n int) (scale *float32, codes []byte) {
	s := w.wire[i][r*w.slot[i] : (r+1)*w.slot[i]]
	scale = (*float32)(unsafe.Pointer(&s[0]))
	codes = unsafe.Slice((*byte)(unsafe.Pointer(&s[2])), 2*(len(s)-2))[:n]
	return scale, codes
}

// pack quantizes rank me's gradients g of bucket i into its slot.
func (w *fp8Wire) pack(i, me int, g []float32) (collective.Buffer, error) {
	scale, codes := w.slotOf(i, me, len(g))
	s, err := numeric.Quantize(codes, g, w.format)
	if err != nil {
		return nil, err
	}
	*scale = s
	return collective.BF16(w.wire[i]), nil
}

// unpack writes the sum over ranks 0..P-1 of the dequantized buckets into g.
func (w *fp8Wire) unpack(i, ranks int, g []float32) {
	decode := numeric.E4M3ToFloat32
	if w.format == numeric.E5M2 {
		decode = numeric.E5M2ToFloat32
	}
	for r := 0; r < ranks; r++ {
		scale, codes := w.slotOf(i, r, len(g))
		s := *scale
		if r == 0 {
			for j, c := range codes {
				g[j] = decode(c) * s
			}
			continue
		}
		for j, c := range codes {
			g[j] += decode(c) * s
		}
	}
}
