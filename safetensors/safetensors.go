package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"unsafe"

	"github.com/strand-ml/strand/atomicfile"
)

// MaxHeaderSize bounds the JSON header, as the reference implementation does
// (100 MB), so a corrupt length cannot make us allocate gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header entry holding string metadata.
const metadataKey = "__metadata__"

// Tensor is one named tensor: row-major, little-endian bytes.
// len(Data) must equal product(Shape) * DType.Size().
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// F32Tensor builds a float32 tensor, copying data into little-endian bytes.
func F32Tensor(name string, shape []int, data []float32) Tensor {
	return Tensor{Name: name, DType: F32, Shape: append([]int(nil), shape...), Data: float32Bytes(data)}
}

// F32View builds a float32 tensor over data's own memory on a
// little-endian machine (a copy, as F32Tensor, elsewhere): data must not
// change until the tensor is written. Checkpoint writers use it so that a
// save does not hold a second copy of every tensor (for a ZeRO-3 rank of
// a 900M-parameter model, 2.6 GB more at the end of the run).
func F32View(name string, shape []int, data []float32) Tensor {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return F32Tensor(name, shape, data)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), 4*len(data))
	return Tensor{Name: name, DType: F32, Shape: append([]int(nil), shape...), Data: b}
}

// F16Tensor builds a float16 tensor, rounding data to nearest even.
func F16Tensor(name string, shape []int, data []float32) Tensor {
	out := make([]byte, 2*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint16(out[2*i:], float32ToHalf(v))
	}
	return Tensor{Name: name, DType: F16, Shape: append([]int(nil), shape...), Data: out}
}

// BF16Tensor builds a bfloat16 tensor, rounding data to nearest even.
func BF16Tensor(name string, shape []int, data []float32) Tensor {
	out := make([]byte, 2*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint16(out[2*i:], float32ToBF16(v))
	}
	return Tensor{Name: name, DType: BF16, Shape: append([]int(nil), shape...), Data: out}
}

// headerEntry is one tensor's JSON description.
type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Write stores tensors (in name order) and optional metadata at path,
// atomically. It rejects duplicate or empty names, unknown dtypes, the
// reserved name "__metadata__", and data whose length does not match the
// shape.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	header, order, err := encodeHeader(tensors, metadata)
	if err != nil {
		return fmt.Errorf("safetensors write %s: %w", path, err)
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(header); err != nil {
			return err
		}
		for _, i := range order {
			if _, err := w.Write(tensors[i].Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// Marshal returns the complete file bytes for tensors and metadata; Write is
// Marshal plus an atomic file write, without holding a second copy.
func Marshal(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	header, order, err := encodeHeader(tensors, metadata)
	if err != nil {
		return nil, fmt.Errorf("safetensors marshal: %w", err)
	}
	var buf bytes.Buffer
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	buf.Write(n[:])
	buf.Write(header)
	for _, i := range order {
		buf.Write(tensors[i].Data)
	}
	return buf.Bytes(), nil
}

// encodeHeader validates tensors and builds the padded JSON header. order is
// the index order (sorted by name) in which the data must follow.
func encodeHeader(tensors []Tensor, metadata map[string]string) (header []byte, order []int, err error) {
	order = make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return tensors[order[a]].Name < tensors[order[b]].Name })

	entries := make(map[string]any, len(tensors)+1)
	if len(metadata) > 0 {
		entries[metadataKey] = metadata
	}
	var off int64
	for k, i := range order {
		t := tensors[i]
		if t.Name == "" {
			return nil, nil, fmt.Errorf("tensor %d has an empty name", i)
		}
		if t.Name == metadataKey {
			return nil, nil, fmt.Errorf("tensor name %q is reserved", t.Name)
		}
		if k > 0 && tensors[order[k-1]].Name == t.Name {
			return nil, nil, fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		want, err := numBytes(t.DType, t.Shape)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if int64(len(t.Data)) != want {
			return nil, nil, fmt.Errorf("tensor %q: %d bytes of data, shape %v x %s needs %d",
				t.Name, len(t.Data), t.Shape, t.DType, want)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{} // a scalar is "shape": [], never null
		}
		entries[t.Name] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + want}}
		off += want
	}
	// encoding/json sorts map keys, so the header is deterministic.
	header, err = json.Marshal(entries)
	if err != nil {
		return nil, nil, fmt.Errorf("encode header: %w", err)
	}
	// Pad with spaces so the byte buffer starts 8-byte aligned.
	if pad := (8 - (8+len(header))%8) % 8; pad > 0 {
		header = append(header, bytes.Repeat([]byte{' '}, pad)...)
	}
	return header, order, nil
}

// File is a parsed safetensors file held in memory.
type File struct {
	names    []string // sorted
	tensors  map[string]Tensor
	metadata map[string]string
}

// Read loads and validates the safetensors file at path.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	return f, nil
}

// Open is Read under the name os.Open users expect: the whole file is
// loaded and validated; there is nothing to close.
func Open(path string) (*File, error) { return Read(path) }

// ErrTruncated is wrapped by errors for a file that ends before its header or
// tensor data does.
var ErrTruncated = errors.New("file is truncated")

// Parse validates a complete safetensors file image. Tensor data aliases
// buf; the caller must not modify buf afterwards.
func Parse(buf []byte) (*File, error) {
	h, err := parseHeader(buf, int64(len(buf)))
	if err != nil {
		return nil, err
	}
	f := &File{tensors: make(map[string]Tensor, len(h.infos)), metadata: h.metadata}
	data := buf[h.dataStart:]
	for _, in := range h.infos {
		end := in.Offset + in.Size
		f.tensors[in.Name] = Tensor{Name: in.Name, DType: in.DType, Shape: in.Shape, Data: data[in.Offset:end:end]}
		f.names = append(f.names, in.Name)
	}
	sort.Strings(f.names)
	return f, nil
}

// Info describes one tensor of a file without its data.
type Info struct {
	Name   string
	DType  DType
	Shape  []int
	Offset int64 // byte offset within the data buffer
	Size   int64 // bytes
}

// Inspect reads and validates only the header of the file at path (checking
// every tensor's span against the file size), for listing large checkpoints
// without loading them. Infos are in file (offset) order.
func Inspect(path string) ([]Info, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	// Read the length word, then exactly the header; anything implausible is
	// worded by parseHeader from what is there.
	var lenBuf [8]byte
	k, _ := io.ReadFull(f, lenBuf[:])
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if k < 8 || n > MaxHeaderSize || n > uint64(st.Size()-8) {
		_, perr := parseHeader(lenBuf[:k], st.Size())
		if perr == nil {
			perr = errors.New("short read of the header length")
		}
		return nil, nil, fmt.Errorf("safetensors %s: %w", path, perr)
	}
	buf := make([]byte, 8+n)
	copy(buf, lenBuf[:])
	if _, err := io.ReadFull(f, buf[8:]); err != nil {
		return nil, nil, fmt.Errorf("safetensors %s: read header: %w", path, err)
	}
	h, err := parseHeader(buf, st.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	if h.metadata == nil {
		h.metadata = map[string]string{}
	}
	return h.infos, h.metadata, nil
}

// parsedHeader is a validated header.
type parsedHeader struct {
	infos     []Info // sorted by offset
	metadata  map[string]string
	dataStart int64 // 8 + header length
}

// parseHeader validates the header at the start of buf for a file of
// fileSize bytes: buf must hold at least the 8-byte length and the header
// when the file does. It checks every tensor span against the data buffer
// size (fileSize - dataStart) without touching the data.
func parseHeader(buf []byte, fileSize int64) (*parsedHeader, error) {
	if fileSize < 8 || len(buf) < 8 {
		return nil, fmt.Errorf("%w: %d bytes, need at least the 8-byte header length", ErrTruncated, fileSize)
	}
	n := binary.LittleEndian.Uint64(buf[:8])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("header length %d exceeds the %d-byte limit (not a safetensors file?)", n, MaxHeaderSize)
	}
	if uint64(fileSize-8) < n || uint64(len(buf)-8) < n {
		return nil, fmt.Errorf("%w: header needs %d bytes, only %d present", ErrTruncated, n, fileSize-8)
	}
	raw := buf[8 : 8+n]
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("header does not start with '{' (not a safetensors file?)")
	}
	entries, err := decodeHeaderObject(raw)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	h := &parsedHeader{dataStart: int64(8 + n)}
	dataLen := fileSize - h.dataStart
	for _, e := range entries {
		if e.name == metadataKey {
			md := map[string]string{}
			if err := json.Unmarshal(e.value, &md); err != nil {
				return nil, fmt.Errorf("header: __metadata__ must map strings to strings: %w", err)
			}
			h.metadata = md
			continue
		}
		if e.name == "" {
			return nil, errors.New("header: a tensor has an empty name")
		}
		var he headerEntry
		dec := json.NewDecoder(bytes.NewReader(e.value))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&he); err != nil {
			return nil, fmt.Errorf("header: tensor %q: %w", e.name, err)
		}
		want, err := numBytes(he.DType, he.Shape)
		if err != nil {
			return nil, fmt.Errorf("header: tensor %q: %w", e.name, err)
		}
		b, end := he.DataOffsets[0], he.DataOffsets[1]
		if b < 0 || end < b {
			return nil, fmt.Errorf("header: tensor %q: bad data_offsets [%d, %d]", e.name, b, end)
		}
		if end-b != want {
			return nil, fmt.Errorf("header: tensor %q: data_offsets [%d, %d] hold %d bytes, shape %v x %s needs %d",
				e.name, b, end, end-b, he.Shape, he.DType, want)
		}
		if he.Shape == nil {
			he.Shape = []int{}
		}
		h.infos = append(h.infos, Info{Name: e.name, DType: he.DType, Shape: he.Shape, Offset: b, Size: want})
	}

	// The tensors must tile the buffer exactly: sorted by offset, each starts
	// where the previous ended, and the last ends at the end of the file.
	sort.Slice(h.infos, func(i, j int) bool {
		a, b := h.infos[i], h.infos[j]
		if a.Offset != b.Offset {
			return a.Offset < b.Offset
		}
		return a.Size < b.Size
	})
	var pos int64
	for _, in := range h.infos {
		if in.Offset != pos {
			return nil, fmt.Errorf("header: tensor %q starts at byte %d, expected %d (tensors must be contiguous, without gaps or overlap)",
				in.Name, in.Offset, pos)
		}
		if in.Offset+in.Size > dataLen {
			return nil, fmt.Errorf("%w: tensor %q needs bytes [%d, %d) of the data buffer, which has only %d",
				ErrTruncated, in.Name, in.Offset, in.Offset+in.Size, dataLen)
		}
		pos = in.Offset + in.Size
	}
	if pos != dataLen {
		return nil, fmt.Errorf("%d trailing bytes after the last tensor (data buffer %d bytes, tensors cover %d)",
			dataLen-pos, dataLen, pos)
	}
	return h, nil
}

type rawEntry struct {
	name  string
	value json.RawMessage
}

// decodeHeaderObject reads the top-level JSON object key by key, rejecting
// duplicate keys (which encoding/json would silently merge) and trailing
// garbage other than the space padding.
func decodeHeaderObject(raw []byte) ([]rawEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	var out []rawEntry
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key is %v, not a string", tok)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("value of %q: %w", key, err)
		}
		out = append(out, rawEntry{key, v})
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, err
	}
	rest := raw[dec.InputOffset():]
	if len(bytes.Trim(rest, " ")) != 0 {
		return nil, errors.New("unexpected bytes after the JSON object")
	}
	return out, nil
}

// Names returns the tensor names in sorted order.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Tensor returns the named tensor. Its Data aliases the file image: copy it
// before modifying.
func (f *File) Tensor(name string) (Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Metadata returns a copy of the __metadata__ map (empty if absent).
func (f *File) Metadata() map[string]string {
	out := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		out[k] = v
	}
	return out
}

// Float32 decodes a floating-point tensor (F32, F16, BF16 or F64) into a new
// float32 slice and returns it with its shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	out, err := decodeFloat32(name, t.DType, t.Data)
	if err != nil {
		return nil, nil, err
	}
	return out, slices.Clone(t.Shape), nil
}

// decodeFloat32 converts little-endian bytes of a float dtype to float32.
func decodeFloat32(name string, dt DType, d []byte) ([]float32, error) {
	switch dt {
	case F32:
		out := make([]float32, len(d)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
		return out, nil
	case F16:
		out := make([]float32, len(d)/2)
		for i := range out {
			out[i] = halfToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
		return out, nil
	case BF16:
		out := make([]float32, len(d)/2)
		for i := range out {
			out[i] = bf16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
		return out, nil
	case F64:
		out := make([]float32, len(d)/8)
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("safetensors: tensor %q has dtype %s, not a float type", name, dt)
}

// Check verifies that the named tensor exists with the given dtype and shape,
// returning an error that names the tensor otherwise. Checkpoint loaders call
// it for every parameter before copying anything.
func (f *File) Check(name string, dtype DType, shape []int) error {
	t, ok := f.tensors[name]
	if !ok {
		return fmt.Errorf("safetensors: tensor %q is missing", name)
	}
	if t.DType != dtype {
		return fmt.Errorf("safetensors: tensor %q has dtype %s, want %s", name, t.DType, dtype)
	}
	if !equalShape(t.Shape, shape) {
		return fmt.Errorf("safetensors: tensor %q has shape %v, want %v", name, t.Shape, shape)
	}
	return nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
