package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sample() []Tensor {
	return []Tensor{
		F32Tensor("z.last", []int{2, 2}, []float32{1, 2, 3, 4}),
		F32Tensor("a.first", []int{3}, []float32{-1, 0.5, 1e-7}),
		{Name: "ids", DType: I64, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "empty", DType: F32, Shape: []int{0, 5}, Data: nil},
		F32Tensor("scalar", nil, []float32{3}),
		{Name: "mask", DType: U8, Shape: []int{3}, Data: []byte{1, 0, 1}},
	}
}

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "model.safetensors")
	in := sample()
	md := map[string]string{"step": "12", "preset": "tiny"}
	if err := Write(p, in, md); err != nil {
		t.Fatal(err)
	}
	f, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Names(), []string{"a.first", "empty", "ids", "mask", "scalar", "z.last"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	if !reflect.DeepEqual(f.Metadata(), md) {
		t.Fatalf("metadata %v", f.Metadata())
	}
	for _, w := range in {
		g, ok := f.Tensor(w.Name)
		if !ok {
			t.Fatalf("missing %s", w.Name)
		}
		if g.DType != w.DType || !equalShape(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("%s: got %+v want %+v", w.Name, g, w)
		}
	}
	v, shape, err := f.Float32("z.last")
	if err != nil || !reflect.DeepEqual(v, []float32{1, 2, 3, 4}) || !reflect.DeepEqual(shape, []int{2, 2}) {
		t.Fatalf("Float32 = %v %v %v", v, shape, err)
	}
	if _, _, err := f.Float32("ids"); err == nil {
		t.Fatal("Float32 of an I64 tensor should fail")
	}
	if _, _, err := f.Float32("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Float32 missing: %v", err)
	}

	// Layout: 8-byte length, header padded so data is 8-aligned, data in name order.
	raw, _ := os.ReadFile(p)
	n := binary.LittleEndian.Uint64(raw)
	if (8+n)%8 != 0 {
		t.Fatalf("header length %d leaves data unaligned", n)
	}
	if !bytes.HasPrefix(raw[8+n:], []byte{0x00, 0x00, 0x80, 0xbf}) { // a.first[0] = -1.0f
		t.Fatalf("data does not start with a.first: % x", raw[8+n:8+n+4])
	}
	// Deterministic: same input, same bytes.
	m, err := Marshal(in, md)
	if err != nil || !bytes.Equal(m, raw) {
		t.Fatalf("Marshal differs from Write (err %v)", err)
	}
}

func TestWriteRejectsBadTensors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.safetensors")
	cases := map[string][]Tensor{
		"empty name":   {F32Tensor("", []int{1}, []float32{1})},
		"reserved":     {F32Tensor("__metadata__", []int{1}, []float32{1})},
		"duplicate":    {F32Tensor("w", []int{1}, []float32{1}), F32Tensor("w", []int{1}, []float32{2})},
		"short data":   {{Name: "w", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}},
		"bad dtype":    {{Name: "w", DType: "F12", Shape: []int{1}, Data: make([]byte, 4)}},
		"negative dim": {{Name: "w", DType: F32, Shape: []int{-1}, Data: nil}},
	}
	for name, ts := range cases {
		if err := Write(p, ts, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("a failed write left a file: %v", err)
	}
}

func TestTruncatedNamesFirstCutTensor(t *testing.T) {
	full, err := Marshal(sample(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.LittleEndian.Uint64(full))
	// Data order is by name: a.first (12 bytes), empty (0), ids (16), mask (3), ...
	// Cut inside ids.
	cut := full[:8+n+12+5]
	_, err = Parse(cut)
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), `"ids"`) {
		t.Fatalf("err = %v, want truncation naming ids", err)
	}
	// Cut inside the header.
	if _, err := Parse(full[:20]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("header cut: %v", err)
	}
	// Through the file API, the error names the path too.
	p := filepath.Join(t.TempDir(), "cut.safetensors")
	if err := os.WriteFile(p, cut, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "ids") {
		t.Fatalf("Read: %v", err)
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	if err := Write(p, sample(), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	infos, md, err := Inspect(p)
	if err != nil {
		t.Fatal(err)
	}
	if md["k"] != "v" || len(infos) != len(sample()) {
		t.Fatalf("infos %+v md %v", infos, md)
	}
	f, _ := Read(p)
	var end int64
	for _, in := range infos {
		tt, ok := f.Tensor(in.Name)
		if !ok || tt.DType != in.DType || !equalShape(tt.Shape, in.Shape) || int64(len(tt.Data)) != in.Size || in.Offset != end {
			t.Fatalf("info %+v vs tensor %+v", in, tt)
		}
		end += in.Size
	}
	// A truncated file fails the same way as Read, naming the cut tensor.
	full, _ := os.ReadFile(p)
	n := int(binary.LittleEndian.Uint64(full))
	for _, c := range []struct {
		size int
		want string
	}{{8 + n + 12 + 5, `"ids"`}, {30, "header needs"}, {5, "8-byte"}, {0, "8-byte"}} {
		cut := filepath.Join(dir, "cut.safetensors")
		os.WriteFile(cut, full[:c.size], 0o644)
		_, _, err := Inspect(cut)
		if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cut at %d: %v, want %q", c.size, err, c.want)
		}
	}
	huge := filepath.Join(dir, "huge.safetensors")
	os.WriteFile(huge, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'}, 0o644)
	if _, _, err := Inspect(huge); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("huge header: %v", err)
	}
	if _, _, err := Inspect(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// build makes a file image from a literal header and data buffer.
func build(header string, data []byte) []byte {
	out := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(out, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func TestParseRejectsMalformed(t *testing.T) {
	cases := []struct {
		name, header string
		data         []byte
		want         string
	}{
		{"not json", `{"a":`, nil, "header"},
		{"not object", `[1,2]`, nil, "'{'"},
		{"unknown dtype", `{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4), "unknown dtype"},
		{"size mismatch", `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4), "needs 8"},
		{"gap", `{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8), "contiguous"},
		{"overlap", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8), "contiguous"},
		{"trailing", `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 6), "trailing"},
		{"duplicate key", `{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1), "duplicate"},
		{"reversed offsets", `{"w":{"dtype":"U8","shape":[0],"data_offsets":[3,1]}}`, nil, "data_offsets"},
		{"negative dim", `{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, nil, "negative"},
		{"huge shape", `{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, nil, "too large"},
		{"bad metadata", `{"__metadata__":{"a":1}}`, nil, "__metadata__"},
		{"garbage after", `{}xx`, nil, "after"},
		{"empty name", `{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1), "empty name"},
		{"unknown field", `{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, make([]byte, 1), "unknown field"},
	}
	for _, c := range cases {
		_, err := Parse(build(c.header, c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	// A header length far beyond the limit is refused before allocating.
	huge := make([]byte, 16)
	binary.LittleEndian.PutUint64(huge, 1<<40)
	if _, err := Parse(huge); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("huge header: %v", err)
	}
	// Padding spaces after the object are fine.
	if _, err := Parse(build(`{}      `, nil)); err != nil {
		t.Fatalf("padded empty file: %v", err)
	}
}

func TestCheck(t *testing.T) {
	f, err := Parse(must(Marshal(sample(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Check("z.last", F32, []int{2, 2}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		dtype DType
		shape []int
		want  string
	}{
		{"missing.w", F32, []int{1}, "missing"},
		{"z.last", BF16, []int{2, 2}, "dtype F32, want BF16"},
		{"z.last", F32, []int{4}, "shape [2 2], want [4]"},
	} {
		err := f.Check(c.name, c.dtype, c.shape)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("Check(%s): %v, want %q", c.name, err, c.want)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestHalfConversions(t *testing.T) {
	// Exhaustive: every non-NaN half and bfloat16 survives float32 and back.
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := halfToFloat32(h)
		if f != f {
			if g := halfToFloat32(float32ToHalf(f)); g == g {
				t.Fatalf("half NaN %#04x lost its NaN-ness", h)
			}
			continue
		}
		if back := float32ToHalf(f); back != h {
			t.Fatalf("half %#04x -> %g -> %#04x", h, f, back)
		}
		b := bf16ToFloat32(h)
		if b == b && float32ToBF16(b) != h {
			t.Fatalf("bf16 %#04x -> %g -> %#04x", h, b, float32ToBF16(b))
		}
	}
	// Rounding: nearest, ties to even; overflow to inf; underflow to zero.
	cases := []struct {
		in   float32
		half uint16
	}{
		{1 + 1.0/2048, 0x3c00},         // tie between 1 and 1+2^-10 -> even (1)
		{1 + 3.0/2048, 0x3c02},         // tie -> even (1+2^-9)
		{65520, 0x7c00},                // rounds up to inf
		{float32(math.Pow(2, -25)), 0}, // half of the smallest subnormal: tie -> 0
		{float32(math.Pow(2, -25)) * 1.5, 0x0001},
		{-2, 0xc000},
	}
	for _, c := range cases {
		if got := float32ToHalf(c.in); got != c.half {
			t.Errorf("float32ToHalf(%g) = %#04x, want %#04x", c.in, got, c.half)
		}
	}
	if got := float32ToBF16(1 + 1.0/256); got != 0x3f80 { // tie -> even
		t.Errorf("bf16 tie: %#04x", got)
	}
	if got := float32ToBF16(1 + 3.0/256); got != 0x3f82 {
		t.Errorf("bf16 tie up: %#04x", got)
	}
}

// TestReadPythonReference reads a file produced from the spec by
// testdata/make_reference.py (torch-encoded values, Python ordering).
func TestReadPythonReference(t *testing.T) {
	f, err := Read("testdata/reference.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if md := f.Metadata(); md["producer"] != "python-by-hand" || md["format"] != "pt" {
		t.Fatalf("metadata %v", md)
	}
	want := map[string]struct {
		shape []int
		vals  []float32
	}{
		"a.f32":    {[]int{2, 3}, []float32{-1, -0.5, 0, 0.5, 1, 1.5}},
		"b.f16":    {[]int{5}, []float32{1, -2.5, 65504, float32(math.Pow(2, -14)), float32(math.Pow(2, -24))}},
		"c.bf16":   {[]int{2, 2}, []float32{1, -3.140625, float32(math.Pow(2, 100)), 0.0078125}},
		"e.scalar": {[]int{}, []float32{42}},
	}
	for name, w := range want {
		v, shape, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(shape, w.shape) || !reflect.DeepEqual(v, w.vals) {
			t.Errorf("%s = %v %v, want %v %v", name, v, shape, w.vals, w.shape)
		}
	}
	ids, _ := f.Tensor("d.i64")
	if ids.DType != I64 || len(ids.Data) != 24 || int64(binary.LittleEndian.Uint64(ids.Data[16:])) != 1<<40 ||
		int64(binary.LittleEndian.Uint64(ids.Data[8:])) != -2 {
		t.Errorf("d.i64 = %+v", ids)
	}
	u8, _ := f.Tensor("f.u8")
	if !bytes.Equal(u8.Data, []byte{0, 7, 255}) {
		t.Errorf("f.u8 = %v", u8.Data)
	}
	i32, _ := f.Tensor("g.i32")
	if i32.DType != I32 || int32(binary.LittleEndian.Uint32(i32.Data)) != -7 {
		t.Errorf("g.i32 = %+v", i32)
	}
}

// TestPythonReadsOurFile writes a file and has torch (via the spec, not
// strand) check every value. Skips when python3 with torch is unavailable.
func TestPythonReadsOurFile(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if testing.Short() {
		t.Skip("-short: skipping the torch cross-check (torch import takes seconds)")
	}
	p := filepath.Join(t.TempDir(), "go.safetensors")
	ts := []Tensor{
		F32Tensor("w.f32", []int{2, 3}, []float32{1.5, -2, 3.25, 0, 1e-3, -7}),
		F16Tensor("w.f16", []int{3}, []float32{0.1, -65504, 3}),
		BF16Tensor("w.bf16", []int{3}, []float32{0.1, -1e20, 3}),
		F32Tensor("scalar", []int{}, []float32{5}),
	}
	if err := Write(p, ts, map[string]string{"producer": "strand", "step": "7"}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "testdata/check_go_file.py", p).CombinedOutput()
	if err != nil && strings.Contains(string(out), "No module named 'torch'") {
		t.Skip("python3 has no torch")
	}
	if err != nil {
		t.Fatalf("python check failed: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python check printed %q", out)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(must(Marshal(sample(), map[string]string{"k": "v"})))
	if ref, err := os.ReadFile("testdata/reference.safetensors"); err == nil {
		f.Add(ref)
	}
	f.Add(build(`{}`, nil))
	f.Add(build(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(build(`{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		// Anything accepted must re-encode and re-parse to the same tensors.
		var ts []Tensor
		for _, n := range file.Names() {
			tt, _ := file.Tensor(n)
			ts = append(ts, tt)
			if _, _, err := file.Float32(n); err != nil && (tt.DType == F32 || tt.DType == F16 || tt.DType == BF16) {
				t.Fatalf("Float32(%s): %v", n, err)
			}
		}
		again, err := Marshal(ts, file.Metadata())
		if err != nil {
			t.Fatalf("accepted file does not re-encode: %v", err)
		}
		f2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if !reflect.DeepEqual(f2.Names(), file.Names()) {
			t.Fatalf("names changed: %v vs %v", f2.Names(), file.Names())
		}
		for _, n := range file.Names() {
			a, _ := file.Tensor(n)
			c, _ := f2.Tensor(n)
			if a.DType != c.DType || !equalShape(a.Shape, c.Shape) || !bytes.Equal(a.Data, c.Data) {
				t.Fatalf("tensor %s changed", n)
			}
		}
	})
}

// F32View writes the same file as F32Tensor, without copying the values.
func TestF32ViewWritesWhatF32TensorWrites(t *testing.T) {
	data := []float32{1, -2.5, 3e-7, 0}
	a, err := Marshal([]Tensor{F32Tensor("w", []int{2, 2}, data)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := F32View("w", []int{2, 2}, data)
	b, err := Marshal([]Tensor{v}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("F32View's file differs from F32Tensor's")
	}
	data[0] = 7 // a view sees the change (on little-endian machines)
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 && binary.LittleEndian.Uint32(v.Data) != math.Float32bits(7) {
		t.Fatal("F32View copied the values")
	}
}
