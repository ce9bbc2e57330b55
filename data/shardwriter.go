package data

import (
	"encoding/binary"
	"fmt"

	"github.com/strand-ml/strand/atomicfile"
)

// ShardWriter streams tokens into an llm.c shard without holding them all in
// memory: it writes a placeholder header, appends tokens, and on Close
// patches the token count and atomically moves the file into place.
//
//	w, err := data.CreateShard("train.bin")
//	if err != nil { return err }
//	defer w.Abort()
//	for ... { if err := w.WriteInts(ids); err != nil { return err } }
//	return w.Close()
type ShardWriter struct {
	f     *atomicfile.File
	path  string
	count int64
	buf   []byte
}

// CreateShard starts a shard at path; nothing appears there until Close.
func CreateShard(path string) (*ShardWriter, error) {
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create shard: %w", err)
	}
	if _, err := f.Write(make([]byte, shardHeaderSize)); err != nil {
		f.Abort()
		return nil, fmt.Errorf("create shard %s: %w", path, err)
	}
	return &ShardWriter{f: f, path: path}, nil
}

// Write appends tokens.
func (w *ShardWriter) Write(tokens []uint16) error {
	if w.count+int64(len(tokens)) > 1<<31-1 {
		return fmt.Errorf("shard %s: more than %d tokens do not fit the format's int32 count", w.path, 1<<31-1)
	}
	w.buf = w.buf[:0]
	for _, t := range tokens {
		w.buf = binary.LittleEndian.AppendUint16(w.buf, t)
	}
	if _, err := w.f.Write(w.buf); err != nil {
		return fmt.Errorf("shard %s: %w", w.path, err)
	}
	w.count += int64(len(tokens))
	return nil
}

// WriteInts appends token ids as produced by a tokenizer; an id outside
// [0, 65535] is an error naming it, and nothing of that call is written.
func (w *ShardWriter) WriteInts(ids []int) error {
	toks := make([]uint16, len(ids))
	for i, id := range ids {
		if id < 0 || id > 0xffff {
			return fmt.Errorf("shard %s: token id %d (token %d of this write) does not fit uint16", w.path, id, w.count+int64(i))
		}
		toks[i] = uint16(id)
	}
	return w.Write(toks)
}

// Count is the number of tokens written so far.
func (w *ShardWriter) Count() int64 { return w.count }

// Close writes the header and commits the shard at its path.
func (w *ShardWriter) Close() error {
	var hdr [12]byte
	binary.LittleEndian.PutUint32(hdr[0:], ShardMagic)
	binary.LittleEndian.PutUint32(hdr[4:], ShardVersion)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(w.count))
	if _, err := w.f.WriteAt(hdr[:], 0); err != nil {
		w.f.Abort()
		return fmt.Errorf("shard %s: write header: %w", w.path, err)
	}
	if err := w.f.Commit(); err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	return nil
}

// Abort discards the shard (a no-op after Close), leaving any previous file
// at the path untouched.
func (w *ShardWriter) Abort() { w.f.Abort() }
