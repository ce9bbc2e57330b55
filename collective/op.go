package collective

import (
	"fmt"
	"math"

	"github.com/strand-ml/strand/vec"
)

// Op is a reduction.
type Op uint8

// Reductions. Avg is Sum divided by the group size, applied once to the
// finished sum so every rank holds the same bits.
const (
	Sum Op = iota + 1
	Avg
	Min
	Max
)

func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	case Min:
		return "min"
	case Max:
		return "max"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

func (o Op) valid() bool { return o >= Sum && o <= Max }

// combine returns a (op) b. Operand order is fixed by the plan so that
// ties (min(-0, +0)) and NaN payloads resolve the same way on every run.
func combine(o Op, a, b float32) float32 {
	switch o {
	case Min:
		if b < a {
			return b
		}
		return a
	case Max:
		if b > a {
			return b
		}
		return a
	}
	return a + b
}

// reduceInto sets dst[i] = peer[i] (op) dst[i] if peerFirst, else
// dst[i] (op) peer[i]; with final and Avg it then divides by n. dst and
// peer are byte views of elements of type dt.
func reduceInto(dt DType, o Op, dst, peer []byte, peerFirst, final bool, n int) {
	scale := final && o == Avg
	inv := float32(n)
	switch dt {
	case Float32:
		d, p := asF32(dst), asF32(peer)
		p = p[:len(d)]
		switch {
		case (o == Sum || o == Avg) && !scale:
			// The hot loop of every ring all-reduce, vectorized (vec.Add,
			// one float32 addition per element, AVX-512 where available).
			// IEEE addition is commutative, so peerFirst needs no second
			// kernel: p+d and d+p are the same bits, except which payload
			// survives when both are NaN, and that choice is still fixed
			// (the result stays independent of timing).
			vec.Add(d, p)
		default:
			for i := range d {
				var v float32
				if peerFirst {
					v = combine(o, p[i], d[i])
				} else {
					v = combine(o, d[i], p[i])
				}
				if scale {
					v /= inv
				}
				d[i] = v
			}
		}
	case BFloat16:
		d, p := asU16(dst), asU16(peer)
		p = p[:len(d)]
		if (o == Sum || o == Avg) && !scale {
			// Hot path, written out so the conversions inline.
			for i := range d {
				a, b := math.Float32frombits(uint32(d[i])<<16), math.Float32frombits(uint32(p[i])<<16)
				var v float32
				if peerFirst {
					v = b + a
				} else {
					v = a + b
				}
				d[i] = BF16FromFloat32(v)
			}
			return
		}
		for i := range d {
			a, b := Float32FromBF16(d[i]), Float32FromBF16(p[i])
			if peerFirst {
				a, b = b, a
			}
			v := combine(o, a, b)
			if scale {
				v /= inv
			}
			d[i] = BF16FromFloat32(v)
		}
	case Float16:
		d, p := asU16(dst), asU16(peer)
		p = p[:len(d)]
		for i := range d {
			a, b := Float32FromF16(d[i]), Float32FromF16(p[i])
			if peerFirst {
				a, b = b, a
			}
			v := combine(o, a, b)
			if scale {
				v /= inv
			}
			d[i] = F16FromFloat32(v)
		}
	}
}
