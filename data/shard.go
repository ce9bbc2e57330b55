package data

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Shard header constants of the llm.c token file format.
const (
	ShardMagic      = 20240520
	ShardVersion    = 1   // uint16 tokens; llm.c's version 2 (uint32) is not supported
	ShardHeaderInts = 256 // int32 words before the tokens
	shardHeaderSize = ShardHeaderInts * 4
)

// WriteShard atomically writes tokens to path as an llm.c shard.
func WriteShard(path string, tokens []uint16) error {
	w, err := CreateShard(path)
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.Write(tokens); err != nil {
		return err
	}
	return w.Close()
}

// ReadShard reads an llm.c shard. It fails, naming the file, on a wrong
// magic or version, or when the token count disagrees with the file size.
func ReadShard(path string) ([]uint16, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read shard: %w", err)
	}
	toks, err := decodeShard(b)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	return toks, nil
}

// decodeShard parses a whole shard image.
func decodeShard(b []byte) ([]uint16, error) {
	if len(b) < shardHeaderSize {
		return nil, fmt.Errorf("file is %d bytes, shorter than the %d-byte header (truncated or not a shard)", len(b), shardHeaderSize)
	}
	magic := int32(binary.LittleEndian.Uint32(b[0:]))
	if magic != ShardMagic {
		return nil, fmt.Errorf("wrong magic %d, want %d (not an llm.c token shard)", magic, ShardMagic)
	}
	version := int32(binary.LittleEndian.Uint32(b[4:]))
	if version != ShardVersion {
		return nil, fmt.Errorf("unsupported shard version %d, want %d (uint16 tokens)", version, ShardVersion)
	}
	count := int64(int32(binary.LittleEndian.Uint32(b[8:])))
	if count < 0 {
		return nil, fmt.Errorf("negative token count %d in header", count)
	}
	have := int64(len(b)-shardHeaderSize) / 2
	switch {
	case int64(len(b)-shardHeaderSize)%2 != 0:
		return nil, fmt.Errorf("token area is %d bytes, not a whole number of uint16 tokens", len(b)-shardHeaderSize)
	case have < count:
		return nil, fmt.Errorf("truncated: header says %d tokens, file holds %d", count, have)
	case have > count:
		return nil, fmt.Errorf("header says %d tokens but file holds %d (trailing data)", count, have)
	}
	toks := make([]uint16, count)
	for i := range toks {
		toks[i] = binary.LittleEndian.Uint16(b[shardHeaderSize+2*i:])
	}
	return toks, nil
}
