package safetensors

import (
	"fmt"
	"os"
)

// Reader reads the tensors of a file one at a time, holding only the
// header in memory: loading a large (sharded) checkpoint through it needs
// memory for one tensor at a time, not for the whole file.
type Reader struct {
	path      string
	f         *os.File
	infos     []Info
	byName    map[string]int
	dataStart int64
}

// OpenReader opens path and validates its header (every span against the
// file size). Close it when done.
func OpenReader(path string) (*Reader, error) {
	infos, _, err := Inspect(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	n := int64(lenBuf[0]) | int64(lenBuf[1])<<8 | int64(lenBuf[2])<<16 | int64(lenBuf[3])<<24 |
		int64(lenBuf[4])<<32 | int64(lenBuf[5])<<40 | int64(lenBuf[6])<<48 | int64(lenBuf[7])<<56
	r := &Reader{path: path, f: f, infos: infos, byName: make(map[string]int, len(infos)), dataStart: 8 + n}
	for i, in := range infos {
		r.byName[in.Name] = i
	}
	return r, nil
}

// Infos lists the tensors in file (offset) order.
func (r *Reader) Infos() []Info { return r.infos }

// Info returns the description of the named tensor.
func (r *Reader) Info(name string) (Info, bool) {
	i, ok := r.byName[name]
	if !ok {
		return Info{}, false
	}
	return r.infos[i], true
}

// Float32 reads and decodes one floating-point tensor (F32, F16, BF16 or
// F64) into a new float32 slice.
func (r *Reader) Float32(name string) ([]float32, error) {
	in, ok := r.Info(name)
	if !ok {
		return nil, fmt.Errorf("safetensors %s: no tensor %q", r.path, name)
	}
	if in.DType != F32 && in.DType != F16 && in.DType != BF16 && in.DType != F64 {
		return nil, fmt.Errorf("safetensors %s: tensor %q has dtype %s, not a float type", r.path, name, in.DType)
	}
	buf := make([]byte, in.Size)
	if _, err := r.f.ReadAt(buf, r.dataStart+in.Offset); err != nil {
		return nil, fmt.Errorf("safetensors %s: read tensor %q: %w", r.path, name, err)
	}
	return decodeFloat32(name, in.DType, buf)
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }
