package tcp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// frameMagic starts every frame header ("SFR1"); a stream that loses sync
// (or a stranger writing garbage) is caught at the next header.
const frameMagic = 0x31524653

// byeMagic starts the goodbye frame a closing transport sends on each of
// its streams ("SBYE"): after it that stream carries nothing more, and its
// closing is a clean exit, not a failure. Goodbye on stream 0 means no new
// messages will come. Layout (little endian):
//
//	[0:4)   magic
//	[4:8)   why: 0 for a plain close; r+1 when the sender is leaving
//	        because it saw rank r fail (the culprit, so that the peer can
//	        name r even before it notices r's death itself)
//	[8:40)  zero
const byeMagic = 0x45594253

// frameHeaderLen is the fixed size of a frame header in bytes.
const frameHeaderLen = 40

// frameHeader describes one part of one message. Layout (little endian):
//
//	[0:4)   magic
//	[4:8)   part length in bytes
//	[8:16)  tag
//	[16:24) message id (per sender and receiver pair)
//	[24:32) message length in bytes
//	[32:40) offset of this part within the message
type frameHeader struct {
	PartLen uint32
	Tag     uint64
	ID      uint64
	Total   uint64
	Offset  uint64
	Bye     bool // a goodbye frame (see byeMagic)
	// ByeWhy (goodbye only): 0, or 1 + the rank whose failure made the
	// sender leave.
	ByeWhy uint32
}

func (h *frameHeader) encode(b *[frameHeaderLen]byte) {
	magic := uint32(frameMagic)
	if h.Bye {
		magic = byeMagic
	}
	binary.LittleEndian.PutUint32(b[0:], magic)
	if h.Bye {
		binary.LittleEndian.PutUint32(b[4:], h.ByeWhy)
		clear(b[8:])
		return
	}
	binary.LittleEndian.PutUint32(b[4:], h.PartLen)
	binary.LittleEndian.PutUint64(b[8:], h.Tag)
	binary.LittleEndian.PutUint64(b[16:], h.ID)
	binary.LittleEndian.PutUint64(b[24:], h.Total)
	binary.LittleEndian.PutUint64(b[32:], h.Offset)
}

var errBadMagic = errors.New("bad frame magic (stream out of sync or not a strand peer)")

// decodeFrameHeader parses and validates a header. maxMessage bounds the
// message length a peer may announce, so a corrupt header cannot make the
// receiver allocate without limit.
func decodeFrameHeader(b []byte, maxMessage uint64) (frameHeader, error) {
	var h frameHeader
	if len(b) < frameHeaderLen {
		return h, fmt.Errorf("frame header truncated: %d of %d bytes", len(b), frameHeaderLen)
	}
	switch binary.LittleEndian.Uint32(b[0:]) {
	case frameMagic:
	case byeMagic:
		h.Bye = true
		h.ByeWhy = binary.LittleEndian.Uint32(b[4:])
		for _, x := range b[8:frameHeaderLen] {
			if x != 0 {
				return h, errors.New("malformed goodbye frame")
			}
		}
		return h, nil
	default:
		return h, errBadMagic
	}
	h.PartLen = binary.LittleEndian.Uint32(b[4:])
	h.Tag = binary.LittleEndian.Uint64(b[8:])
	h.ID = binary.LittleEndian.Uint64(b[16:])
	h.Total = binary.LittleEndian.Uint64(b[24:])
	h.Offset = binary.LittleEndian.Uint64(b[32:])
	if h.Total > maxMessage {
		return h, fmt.Errorf("frame announces a %d-byte message, limit is %d", h.Total, maxMessage)
	}
	if h.Offset > h.Total || uint64(h.PartLen) > h.Total-h.Offset {
		return h, fmt.Errorf("frame part [%d, %d) lies outside its %d-byte message", h.Offset, h.Offset+uint64(h.PartLen), h.Total)
	}
	if h.Offset != 0 && h.PartLen == 0 {
		return h, fmt.Errorf("empty frame part at offset %d", h.Offset)
	}
	return h, nil
}
