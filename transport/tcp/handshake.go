package tcp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtocolVersion is bumped on any incompatible change to the handshake or
// frame layout; peers with different versions refuse each other.
// Version 2: the goodbye frame names the rank whose failure made its
// sender leave.
const ProtocolVersion = 2

var helloMagic = [8]byte{'S', 'T', 'R', 'A', 'N', 'D', 'H', 'S'}

const (
	helloFixedLen = 46  // bytes before the job id
	maxJobIDLen   = 255 // keeps the hello bounded
	nonceLen      = 16
	macLen        = sha256.Size
)

// hello is the first thing a dialing rank sends on a new socket.
//
//	[0:8)   magic "STRANDHS"      [8:10)  version     [10:12) flags (bit 0: little-endian host)
//	[12:16) from rank             [16:20) to rank     [20:24) world size
//	[24:26) stream index          [26:28) streams per peer pair
//	[28:44) dialer nonce          [44:46) job id length, then the job id
type hello struct {
	Version  uint16
	Flags    uint16
	From, To uint32
	Size     uint32
	Stream   uint16
	Streams  uint16
	Nonce    [nonceLen]byte
	JobID    string
}

const flagLittleEndian = 1

func (h *hello) encode() []byte {
	b := make([]byte, helloFixedLen+len(h.JobID))
	copy(b, helloMagic[:])
	binary.LittleEndian.PutUint16(b[8:], h.Version)
	binary.LittleEndian.PutUint16(b[10:], h.Flags)
	binary.LittleEndian.PutUint32(b[12:], h.From)
	binary.LittleEndian.PutUint32(b[16:], h.To)
	binary.LittleEndian.PutUint32(b[20:], h.Size)
	binary.LittleEndian.PutUint16(b[24:], h.Stream)
	binary.LittleEndian.PutUint16(b[26:], h.Streams)
	copy(b[28:44], h.Nonce[:])
	binary.LittleEndian.PutUint16(b[44:], uint16(len(h.JobID)))
	copy(b[helloFixedLen:], h.JobID)
	return b
}

// readHello reads and parses a hello, rejecting anything malformed before
// reading more than helloFixedLen+maxJobIDLen bytes. It returns the raw
// bytes too, since both MACs cover them.
func readHello(r io.Reader) (hello, []byte, error) {
	var h hello
	fixed := make([]byte, helloFixedLen, helloFixedLen+maxJobIDLen)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return h, nil, fmt.Errorf("read hello: %w", err)
	}
	if [8]byte(fixed[:8]) != helloMagic {
		return h, nil, errors.New("not a strand hello (bad magic)")
	}
	n := int(binary.LittleEndian.Uint16(fixed[44:]))
	if n > maxJobIDLen {
		return h, nil, fmt.Errorf("hello job id length %d exceeds %d", n, maxJobIDLen)
	}
	raw := fixed[:helloFixedLen+n]
	if _, err := io.ReadFull(r, raw[helloFixedLen:]); err != nil {
		return h, nil, fmt.Errorf("read hello job id: %w", err)
	}
	h.Version = binary.LittleEndian.Uint16(raw[8:])
	h.Flags = binary.LittleEndian.Uint16(raw[10:])
	h.From = binary.LittleEndian.Uint32(raw[12:])
	h.To = binary.LittleEndian.Uint32(raw[16:])
	h.Size = binary.LittleEndian.Uint32(raw[20:])
	h.Stream = binary.LittleEndian.Uint16(raw[24:])
	h.Streams = binary.LittleEndian.Uint16(raw[26:])
	copy(h.Nonce[:], raw[28:44])
	h.JobID = string(raw[helloFixedLen:])
	return h, raw, nil
}

// check validates a received hello against the listener's own view.
func (h *hello) check(self, size, streams int, jobID string) error {
	switch {
	case h.Version != ProtocolVersion:
		return fmt.Errorf("protocol version %d, want %d", h.Version, ProtocolVersion)
	case h.Flags&flagLittleEndian == 0:
		return errors.New("peer is big-endian; strand's wire format is host order and needs little-endian peers")
	case h.JobID != jobID:
		return fmt.Errorf("job id %q, want %q", h.JobID, jobID)
	case int(h.Size) != size:
		return fmt.Errorf("world size %d, want %d", h.Size, size)
	case int(h.To) != self:
		return fmt.Errorf("addressed to rank %d, this is rank %d", h.To, self)
	case int(h.From) <= self || int(h.From) >= size:
		return fmt.Errorf("from rank %d: only ranks in (%d, %d) dial rank %d", h.From, self, size, self)
	case int(h.Streams) != streams || int(h.Stream) >= streams:
		return fmt.Errorf("stream %d of %d, want %d streams", h.Stream, h.Streams, streams)
	}
	return nil
}

// handshakeMAC is HMAC-SHA256(token, label || hello || listener nonce).
// The labels make the dialer's and the listener's proofs different, so
// neither can be replayed as the other.
func handshakeMAC(token []byte, label string, rawHello []byte, nonce [nonceLen]byte) [macLen]byte {
	m := hmac.New(sha256.New, token)
	m.Write([]byte(label))
	m.Write(rawHello)
	m.Write(nonce[:])
	var out [macLen]byte
	copy(out[:], m.Sum(nil))
	return out
}

func newNonce() ([nonceLen]byte, error) {
	var n [nonceLen]byte
	_, err := rand.Read(n[:])
	return n, err
}

// Listener reply: status byte, then on success the listener nonce and its
// MAC; on refusal a reason (length byte + text) so the dialer can say why.
const (
	statusOK       = 0
	statusRefused  = 1
	statusAuthFail = 2
)

func writeRefusal(w io.Writer, status byte, reason string) {
	if len(reason) > 255 {
		reason = reason[:255]
	}
	b := append([]byte{status, byte(len(reason))}, reason...)
	_, _ = w.Write(b)
}

// serverHandshake runs the listener side on a fresh socket and returns the
// peer's verified hello.
func serverHandshake(rw io.ReadWriter, token []byte, self, size, streams int, jobID string) (hello, error) {
	h, raw, err := readHello(rw)
	if err != nil {
		return h, err
	}
	if err := h.check(self, size, streams, jobID); err != nil {
		writeRefusal(rw, statusRefused, err.Error())
		return h, fmt.Errorf("refused hello from rank %d: %w", h.From, err)
	}
	nonce, err := newNonce()
	if err != nil {
		return h, err
	}
	mac := handshakeMAC(token, "strand-listener", raw, nonce)
	reply := make([]byte, 0, 1+nonceLen+macLen)
	reply = append(reply, statusOK)
	reply = append(reply, nonce[:]...)
	reply = append(reply, mac[:]...)
	if _, err := rw.Write(reply); err != nil {
		return h, fmt.Errorf("write challenge: %w", err)
	}
	var proof [macLen]byte
	if _, err := io.ReadFull(rw, proof[:]); err != nil {
		return h, fmt.Errorf("read proof from rank %d: %w", h.From, err)
	}
	want := handshakeMAC(token, "strand-dialer", raw, nonce)
	if !hmac.Equal(proof[:], want[:]) {
		writeRefusal(rw, statusAuthFail, "authentication failed")
		return h, fmt.Errorf("rank %d failed authentication (wrong token?)", h.From)
	}
	if _, err := rw.Write([]byte{statusOK}); err != nil {
		return h, fmt.Errorf("write accept: %w", err)
	}
	return h, nil
}

// errAuth marks authentication failures, which retrying cannot fix.
var errAuth = errors.New("authentication failed (do both ranks use the same token?)")

// clientHandshake runs the dialer side.
func clientHandshake(rw io.ReadWriter, token []byte, h hello) error {
	raw := h.encode()
	if _, err := rw.Write(raw); err != nil {
		return fmt.Errorf("write hello: %w", err)
	}
	readStatus := func() error {
		var st [2]byte
		if _, err := io.ReadFull(rw, st[:1]); err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		if st[0] == statusOK {
			return nil
		}
		reason := "?"
		if _, err := io.ReadFull(rw, st[1:2]); err == nil {
			b := make([]byte, st[1])
			if _, err := io.ReadFull(rw, b); err == nil {
				reason = string(b)
			}
		}
		if st[0] == statusAuthFail {
			return fmt.Errorf("peer refused: %s: %w", reason, errAuth)
		}
		return fmt.Errorf("peer refused: %s", reason)
	}
	if err := readStatus(); err != nil {
		return err
	}
	var challenge [nonceLen + macLen]byte
	if _, err := io.ReadFull(rw, challenge[:]); err != nil {
		return fmt.Errorf("read challenge: %w", err)
	}
	nonce := [nonceLen]byte(challenge[:nonceLen])
	want := handshakeMAC(token, "strand-listener", raw, nonce)
	proof := handshakeMAC(token, "strand-dialer", raw, nonce)
	// Send our proof even if the listener's failed, so that the listener
	// learns (and logs) the mismatch too instead of seeing a bare EOF.
	if _, err := rw.Write(proof[:]); err != nil {
		return fmt.Errorf("write proof: %w", err)
	}
	if !hmac.Equal(challenge[nonceLen:], want[:]) {
		return fmt.Errorf("listener proof did not verify: %w", errAuth)
	}
	return readStatus()
}
