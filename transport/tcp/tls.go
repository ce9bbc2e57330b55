package tcp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
)

// TLS on the data path (Config.TLS). The rule, on both ends of a socket:
// a socket whose listening address is a loopback address stays plaintext,
// every other socket runs TLS (1.3, mutual certificates) before the
// strand hello. The dialer looks at the address it dials, the listener at
// the local address the socket arrived on: the same address, so both ends
// always agree. Loopback traffic never leaves the kernel, and a job whose
// ranks share one host (or use shared memory between them, transport/shm)
// keeps its fast path; only bytes that cross a network are encrypted.
//
// A TLS socket keeps the plaintext design's guarantees except one: a TLS
// write that times out leaves the session unusable, so a frame cannot be
// finished after its deadline. TLS writes get finishGrace beyond their
// deadline from the start instead, and a write that still times out fails
// the peer (peer.go, writeLocked).

// errTLS marks TLS handshake failures that retrying cannot fix (a peer
// certificate from another CA, our certificate refused).
var errTLS = errors.New("TLS authentication failed (do both ranks have the job's TLS certificate authority?)")

// sock is one connected socket during setup, and its TLS session if any.
type sock struct {
	tcp *net.TCPConn
	tls *tls.Conn
}

// rw is what the handshake and the frames go through.
func (s sock) rw() net.Conn {
	if s.tls != nil {
		return s.tls
	}
	return s.tcp
}

// useTLS says whether a socket to or at addr (the listener's address)
// runs TLS.
func (t *Transport) useTLS(addr net.Addr) bool {
	if t.cfg.TLS == nil {
		return false
	}
	a, ok := addr.(*net.TCPAddr)
	return !ok || !a.IP.IsLoopback() || t.cfg.TLSLoopback
}

// clientTLS runs the dialer's TLS handshake with rank p at addr (within
// the socket's handshake deadline).
func (t *Transport) clientTLS(ctx context.Context, c *net.TCPConn, p int, addr string) (*tls.Conn, error) {
	tc := tls.Client(c, t.cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		if final(err) {
			return nil, fmt.Errorf("TLS handshake with rank %d at %s: %v: %w", p, addr, err, errTLS)
		}
		return nil, fmt.Errorf("TLS handshake with rank %d at %s: %w", p, addr, err)
	}
	return tc, nil
}

// serverTLS runs the listener's TLS handshake (within the socket's
// handshake deadline); a plaintext or garbage hello fails it at once.
func (t *Transport) serverTLS(c *net.TCPConn) (*tls.Conn, error) {
	tc := tls.Server(c, t.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// final reports whether a client handshake error is about credentials
// (ours refused, or the peer's not from our CA) rather than the network.
func final(err error) bool {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	return errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &hostname) || errors.As(err, &verify) || errors.As(err, &alert)
}

// tlsInUse reports whether any socket of the started transport runs TLS.
func (t *Transport) tlsInUse() bool {
	for _, p := range t.peers {
		if p == nil {
			continue
		}
		for _, s := range p.streams {
			if s.tls != nil {
				return true
			}
		}
	}
	return false
}

// TLSPeers lists the peers this rank reaches over TLS (sockets that leave
// the host), for logs and tests.
func (t *Transport) TLSPeers() []int {
	var out []int
	for r, p := range t.peers {
		if p != nil && len(p.streams) > 0 && p.streams[0].tls != nil {
			out = append(out, r)
		}
	}
	return out
}
