package coordinator

import (
	"errors"
	"fmt"
	"io"
	"net"

	"go.uber.org/zap"

	"github.com/strand-ml/strand/internal/ratelog"
)

// http2Preface is what a gRPC client sends first on a plaintext
// connection; with TLS the first bytes are a TLS handshake record.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// tlsRecordStart is the first two bytes of a TLS handshake record
// (content type 22, major version 3).
var tlsRecordStart = []byte{0x16, 0x03}

var errGarbageHello = errors.New("garbage instead of a gRPC hello")

// helloListener checks the first bytes of every connection the gRPC
// server accepts: anything that is not the start of the expected hello
// (the HTTP/2 preface, or a TLS record under TLS) closes the connection
// at once and is logged, rate-limited per peer host; a hello that stops
// short is logged when the server's handshake deadline
// (grpc.ConnectionTimeout, Config.HandshakeTimeout) ends it. gRPC itself
// drops both, but silently.
type helloListener struct {
	net.Listener
	want []byte
	rej  *ratelog.Limiter
}

func (l *helloListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &helloConn{Conn: c, l: l}, nil
}

// helloConn watches the bytes read until the expected hello prefix has
// gone by. gRPC reads a connection from one goroutine during the
// handshake, so no lock is needed.
type helloConn struct {
	net.Conn
	l    *helloListener
	seen int // bytes of l.want matched so far
}

func (c *helloConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	want := c.l.want
	if c.seen >= len(want) {
		return n, err
	}
	for i := 0; i < n && c.seen < len(want); i++ {
		if b[i] != want[c.seen] {
			c.l.rej.Warn(c.RemoteAddr().String(), "coordinator: dropped a connection that sent garbage instead of a gRPC hello",
				zap.String("first_bytes", fmt.Sprintf("%q", b[:min(n, 16)])))
			c.Conn.Close()
			return 0, errGarbageHello
		}
		c.seen++
	}
	if err != nil && c.seen < len(want) && (c.seen > 0 || !errors.Is(err, io.EOF)) {
		// a timeout (the handshake deadline) or a hello cut short; a
		// connection closed before any byte (a port probe) is not logged
		c.l.rej.Warn(c.RemoteAddr().String(), "coordinator: dropped a connection whose hello was truncated or never finished",
			zap.Int("hello_bytes", c.seen), zap.Error(err))
	}
	return n, err
}

// helloPrefix is what a connection must start with.
func helloPrefix(tls bool) []byte {
	if tls {
		return tlsRecordStart
	}
	return http2Preface
}
