package numeric

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// codec is one format under test, as a pair of functions on codes.
type codec struct {
	name   string
	codes  int // number of codes (2^bits)
	enc    func(float32) uint32
	dec    func(uint32) float32
	maxFin float32
	hasInf bool
}

func codecs() []codec {
	return []codec{
		{"fp16", 1 << 16, func(f float32) uint32 { return uint32(F16FromFloat32(f)) }, func(c uint32) float32 { return F16ToFloat32(uint16(c)) }, 65504, true},
		{"bf16", 1 << 16, func(f float32) uint32 { return uint32(BF16FromFloat32(f)) }, func(c uint32) float32 { return BF16ToFloat32(uint16(c)) }, math.Float32frombits(0x7F7F0000), true},
		{"e5m2", 1 << 8, func(f float32) uint32 { return uint32(E5M2FromFloat32(f)) }, func(c uint32) float32 { return E5M2ToFloat32(uint8(c)) }, 57344, true},
		{"e4m3", 1 << 8, func(f float32) uint32 { return uint32(E4M3FromFloat32(f)) }, func(c uint32) float32 { return E4M3ToFloat32(uint8(c)) }, 448, false},
	}
}

// finiteValues returns the distinct non-negative finite values of a format,
// sorted, and for each the code that encodes it.
func finiteValues(c codec) ([]float64, []uint32) {
	type vc struct {
		v float64
		c uint32
	}
	var all []vc
	for code := 0; code < c.codes/2; code++ { // sign bit clear
		v := c.dec(uint32(code))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			continue
		}
		all = append(all, vc{float64(v), uint32(code)})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	vs, cs := make([]float64, len(all)), make([]uint32, len(all))
	for i, x := range all {
		vs[i], cs[i] = x.v, x.c
	}
	return vs, cs
}

// TestRoundTripEveryCode: decoding then encoding any non-NaN code gives it
// back (so decode is exact and encode is its inverse on representable values,
// including subnormals, both zeros and infinities).
func TestRoundTripEveryCode(t *testing.T) {
	for _, c := range codecs() {
		nans := 0
		for code := 0; code < c.codes; code++ {
			v := c.dec(uint32(code))
			if math.IsNaN(float64(v)) {
				nans++
				if got := c.enc(v); !math.IsNaN(float64(c.dec(got))) {
					t.Fatalf("%s: NaN code %#x re-encodes to non-NaN %#x", c.name, code, got)
				}
				continue
			}
			if got := c.enc(v); got != uint32(code) {
				t.Fatalf("%s: code %#x decodes to %g, which encodes to %#x", c.name, code, v, got)
			}
		}
		wantNaN := map[string]int{"fp16": 2 * 1023, "bf16": 2 * 127, "e5m2": 2 * 3, "e4m3": 2}[c.name]
		if nans != wantNaN {
			t.Errorf("%s: %d NaN codes, want %d", c.name, nans, wantNaN)
		}
	}
}

// TestTiesToEven: the exact midpoint between neighbouring values rounds to
// the one with an even code; a hair above or below goes to the nearer.
func TestTiesToEven(t *testing.T) {
	for _, c := range codecs() {
		vs, cs := finiteValues(c)
		for i := 0; i+1 < len(vs); i++ {
			mid := (vs[i] + vs[i+1]) / 2
			m32 := float32(mid)
			if float64(m32) != mid {
				t.Fatalf("%s: midpoint %g not exact in float32", c.name, mid)
			}
			even := cs[i]
			if even&1 == 1 {
				even = cs[i+1]
			}
			if got := c.enc(m32); got != even {
				t.Fatalf("%s: midpoint %g of %g and %g -> %#x, want even %#x", c.name, mid, vs[i], vs[i+1], got, even)
			}
			if got := c.enc(-m32); got != even|uint32(c.codes/2) {
				t.Fatalf("%s: negative midpoint %g -> %#x", c.name, -mid, got)
			}
			up := math.Nextafter32(m32, float32(math.Inf(1)))
			if got := c.enc(up); got != cs[i+1] {
				t.Fatalf("%s: just above midpoint %g -> %#x, want %#x", c.name, up, got, cs[i+1])
			}
			down := math.Nextafter32(m32, float32(math.Inf(-1)))
			if got := c.enc(down); got != cs[i] {
				t.Fatalf("%s: just below midpoint %g -> %#x, want %#x", c.name, down, got, cs[i])
			}
		}
	}
}

// TestNearestRandom compares encoding with a brute-force nearest search on
// random float32 values over the format's whole range, subnormals included.
func TestNearestRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range codecs() {
		vs, cs := finiteValues(c)
		for it := 0; it < 20000; it++ {
			// log-uniform magnitude from below the smallest subnormal to max.
			lo, hi := math.Log2(vs[1]/4), math.Log2(float64(c.maxFin))
			x := float32(math.Exp2(lo + (hi-lo)*r.Float64()))
			j := sort.SearchFloat64s(vs, float64(x)) // vs[j-1] < x <= vs[j]
			var want uint32
			switch {
			case j == len(vs):
				want = cs[j-1]
			case vs[j] == float64(x) || j == 0:
				want = cs[j]
			default:
				dl, du := float64(x)-vs[j-1], vs[j]-float64(x)
				want = cs[j]
				if dl < du || dl == du && cs[j-1]&1 == 0 {
					want = cs[j-1]
				}
			}
			if got := c.enc(x); got != want {
				t.Fatalf("%s: %g -> %#x (%g), want %#x (%g)", c.name, x, got, c.dec(got), want, c.dec(want))
			}
		}
	}
}

func TestSpecialValues(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, c := range codecs() {
		if !math.IsNaN(float64(c.dec(c.enc(nan)))) {
			t.Errorf("%s: NaN lost", c.name)
		}
		if got := c.dec(c.enc(float32(math.Copysign(0, -1)))); got != 0 || !math.Signbit(float64(got)) {
			t.Errorf("%s: -0 became %g", c.name, got)
		}
		// A float32 subnormal is far below every format's smallest value.
		if got := c.dec(c.enc(math.Float32frombits(1))); got != 0 && c.name != "bf16" {
			t.Errorf("%s: float32 subnormal became %g", c.name, got)
		}
		big := c.maxFin * 4
		if c.name == "bf16" {
			big = float32(math.MaxFloat32)
		}
		if c.hasInf {
			if got := c.dec(c.enc(inf)); !math.IsInf(float64(got), 1) {
				t.Errorf("%s: +Inf became %g", c.name, got)
			}
			if got := c.dec(c.enc(-inf)); !math.IsInf(float64(got), -1) {
				t.Errorf("%s: -Inf became %g", c.name, got)
			}
			if c.name != "bf16" {
				if got := c.dec(c.enc(-big)); !math.IsInf(float64(got), -1) {
					t.Errorf("%s: overflow %g became %g, want -Inf", c.name, -big, got)
				}
			}
		} else {
			if got := c.dec(c.enc(-big)); got != -c.maxFin {
				t.Errorf("%s: overflow %g became %g, want saturation to %g", c.name, -big, got, -c.maxFin)
			}
			if got := c.dec(c.enc(inf)); !math.IsNaN(float64(got)) {
				t.Errorf("%s: +Inf became %g, want NaN", c.name, got)
			}
		}
	}
	// bf16 keeps float32 subnormals (same exponent range): 2^-133 is exact.
	if got := BF16ToFloat32(BF16FromFloat32(0x1p-133)); got != 0x1p-133 {
		t.Errorf("bf16 subnormal 2^-133 became %g", got)
	}
	// A NaN whose payload is only in the low bits must not round into Inf.
	if got := BF16ToFloat32(BF16FromFloat32(math.Float32frombits(0x7F800001))); !math.IsNaN(float64(got)) {
		t.Errorf("bf16: low-payload NaN became %g", got)
	}
	// Spot values from the format definitions.
	for _, tc := range []struct {
		name string
		got  float32
		want float32
	}{
		{"fp16 min subnormal", F16ToFloat32(0x0001), 0x1p-24},
		{"fp16 min normal", F16ToFloat32(0x0400), 0x1p-14},
		{"e5m2 min subnormal", E5M2ToFloat32(0x01), 0x1p-16},
		{"e4m3 min subnormal", E4M3ToFloat32(0x01), 0x1p-9},
		{"e4m3 max", E4M3ToFloat32(0x7E), 448},
		{"e5m2 max", E5M2ToFloat32(0x7B), 57344},
		{"bf16 1/3", BF16ToFloat32(BF16FromFloat32(1.0 / 3)), math.Float32frombits(0x3EAB0000)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %g, want %g", tc.name, tc.got, tc.want)
		}
	}
}

func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 1000)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 1e-3)
	}
	src[7] = 5e-3 // the max
	for _, f := range []FP8{E4M3, E5M2} {
		q := make([]uint8, len(src))
		scale, err := Quantize(q, src, f)
		if err != nil {
			t.Fatal(err)
		}
		if want := 5e-3 / f.MaxFinite(); math.Abs(float64(scale-want)) > 1e-6*float64(want) {
			t.Fatalf("%v: scale %g, want %g", f, scale, want)
		}
		back := make([]float32, len(src))
		if err := Dequantize(back, q, scale, f); err != nil {
			t.Fatal(err)
		}
		// Relative error of a normal fp8 value is at most 2^-(man+1).
		rel := map[FP8]float64{E4M3: 1.0 / 16, E5M2: 1.0 / 8}[f]
		for i := range src {
			d := math.Abs(float64(back[i] - src[i]))
			if d > rel*math.Abs(float64(src[i]))+float64(scale)*0x1p-9 {
				t.Fatalf("%v: %g came back as %g", f, src[i], back[i])
			}
		}
		if back[7] != src[7] && math.Abs(float64(back[7]-src[7])) > 1e-9 {
			t.Fatalf("%v: the max %g came back as %g", f, src[7], back[7])
		}
	}
	zero := make([]float32, 4)
	q := make([]uint8, 4)
	if scale, err := Quantize(q, zero, E4M3); err != nil || scale != 1 {
		t.Fatalf("all-zero tensor: scale %g, err %v", scale, err)
	}
	if _, err := Quantize(q[:3], zero, E4M3); err == nil {
		t.Fatal("length mismatch accepted")
	}
	if _, err := Quantize(q, zero, FP8(9)); err == nil {
		t.Fatal("unknown format accepted")
	}
	if err := Dequantize(zero, q, 1, FP8(9)); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func TestSliceHelpers(t *testing.T) {
	src := []float32{1, -2.5, 65504, 1e-8}
	h := make([]uint16, 4)
	back := make([]float32, 4)
	if err := EncodeF16(h, src); err != nil {
		t.Fatal(err)
	}
	if err := DecodeF16(back, h); err != nil {
		t.Fatal(err)
	}
	if back[0] != 1 || back[1] != -2.5 || back[2] != 65504 || back[3] != 0 { // 1e-8 < half of 2^-24
		t.Fatalf("fp16 slice round trip: %v", back)
	}
	if err := EncodeBF16(h, src); err != nil {
		t.Fatal(err)
	}
	if err := DecodeBF16(back, h); err != nil {
		t.Fatal(err)
	}
	if back[0] != 1 || back[1] != -2.5 {
		t.Fatalf("bf16 slice round trip: %v", back)
	}
	if EncodeBF16(h[:1], src) == nil || DecodeBF16(back[:1], h) == nil || EncodeF16(h[:1], src) == nil || DecodeF16(back[:1], h) == nil {
		t.Fatal("length mismatch accepted")
	}
}
