package coordinator

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/mesh"
)

// observed starts a coordinator logging into an observer.
func observed(t *testing.T, mod func(*Config)) (*Server, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := startServer(t, mesh.Mesh{DP: 1, TP: 1, PP: 1}, func(c *Config) {
		c.Log = zap.New(core)
		if mod != nil {
			mod(c)
		}
	})
	return s, logs
}

// waitLog waits up to 5 s for a warning containing msg and returns it.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string) observer.LoggedEntry {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if es := logs.FilterMessageSnippet(msg).All(); len(es) > 0 {
			return es[0]
		}
	}
	t.Fatalf("no log line containing %q; got %v", msg, logs.All())
	return observer.LoggedEntry{}
}

// TestWrongTokenIsLoggedOncePerPeer: calls with a wrong token are
// refused and logged at warn level with the caller's address and method;
// a flood of them from one host is one line (rate-limited).
func TestWrongTokenIsLoggedOncePerPeer(t *testing.T) {
	s, logs := observed(t, nil)
	c := dial(t, s.Addr(), "guess")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 50; i++ {
		if _, err := c.Status(ctx); err == nil {
			t.Fatal("status with a wrong token succeeded")
		}
	}
	e := waitLog(t, logs, "wrong job token")
	if e.Level != zapcore.WarnLevel {
		t.Errorf("logged at %v, want warn", e.Level)
	}
	peer, _ := e.ContextMap()["peer"].(string)
	if !strings.HasPrefix(peer, "127.0.0.1:") || !strings.Contains(e.ContextMap()["method"].(string), "Status") {
		t.Errorf("fields %v, want the peer address and the method", e.ContextMap())
	}
	if n := logs.FilterMessageSnippet("wrong job token").Len(); n != 1 {
		t.Errorf("%d lines for 50 refused calls from one host, want 1", n)
	}
}

// TestGarbageOnTheGRPCPortIsDroppedAndLogged: bytes that are not a gRPC
// hello close the connection at once, and are logged with the peer's
// address; a hello that stops short is dropped after the handshake
// timeout and logged; the coordinator still serves good clients.
func TestGarbageOnTheGRPCPortIsDroppedAndLogged(t *testing.T) {
	const hs = 500 * time.Millisecond
	s, logs := observed(t, func(c *Config) { c.HandshakeTimeout = hs })

	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); isTimeout(err) { // EOF or a reset: closed
		t.Fatalf("garbage connection not closed: %v", err)
	}
	e := waitLog(t, logs, "garbage instead of a gRPC hello")
	if e.Level != zapcore.WarnLevel || !strings.HasPrefix(e.ContextMap()["peer"].(string), "127.0.0.1:") {
		t.Errorf("garbage logged as %v %v", e.Level, e.ContextMap())
	}

	// a truncated hello: the first 10 bytes of the preface, then silence
	trunc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer trunc.Close()
	if _, err := trunc.Write(http2Preface[:10]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = trunc.SetReadDeadline(time.Now().Add(10 * hs))
	_, _ = io.ReadAll(trunc)
	if took := time.Since(start); took >= 10*hs {
		t.Errorf("a truncated hello was not dropped within %v", 10*hs)
	}
	e = waitLog(t, logs, "truncated or never finished")
	if got := e.ContextMap()["hello_bytes"]; got != int64(10) {
		t.Errorf("truncated hello logged with %v bytes, want 10", got)
	}

	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("a good client after the garbage: %v", err)
	}
}

// TestGossipGarbageIsLogged: a UDP packet of garbage to the gossip port
// (it fails to decrypt) is logged at warn level with the sender's
// address, and a flood of them is one line.
func TestGossipGarbageIsLogged(t *testing.T) {
	s, logs := observed(t, nil)
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep := joinAll(t, ctx, c, []int{0})[0]
	u, err := net.Dial("udp", rep.GossipSeed)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for i := 0; i < 20; i++ {
		if _, err := u.Write([]byte("this is not an encrypted memberlist packet at all")); err != nil {
			t.Fatal(err)
		}
	}
	e := waitLog(t, logs, "gossip:")
	if e.Level != zapcore.WarnLevel || !strings.HasPrefix(e.ContextMap()["peer"].(string), "127.0.0.1:") {
		t.Errorf("gossip garbage logged as %v %v", e.Level, e.ContextMap())
	}
	time.Sleep(200 * time.Millisecond)
	if n := logs.FilterMessageSnippet(e.Message).Len(); n != 1 {
		t.Errorf("%d lines for 20 garbage packets from one host, want 1", n)
	}
}

// TestStillHeartbeatingIsLogged: memberlist calling a rank dead while it
// still heartbeats is printed (at warn), not acted on.
func TestStillHeartbeatingIsLogged(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := startServer(t, mesh.Mesh{DP: 2, TP: 1, PP: 1}, func(c *Config) { c.Log = zap.New(core) })
	c := dial(t, s.Addr(), testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reps := joinAll(t, ctx, c, []int{0, 1})
	ml, err := StartGossip(GossipName(1), "127.0.0.1", testToken, GossipConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ml.Join([]string{reps[1].GossipSeed}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = ml.Shutdown()
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if _, err := c.RPC.Heartbeat(ctx, &pb.HeartbeatRequest{Rank: 1}); err != nil {
			t.Fatal(err)
		}
		if logs.FilterMessageSnippet("still heartbeats").Len() > 0 {
			break
		}
	}
	e := waitLog(t, logs, "still heartbeats")
	if e.Level != zapcore.WarnLevel || e.ContextMap()["dead_rank"] != int64(1) {
		t.Errorf("logged %v %v", e.Level, e.ContextMap())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestGarbageOnTheTLSPortIsDroppedAndLogged: under TLS the hello is a TLS
// record; anything else (here a plaintext HTTP/2 preface, as a client
// without --tls-ca sends) is dropped and logged with the peer's address.
func TestGarbageOnTheTLSPortIsDroppedAndLogged(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	s, logs := observed(t, func(c *Config) { c.CertFile, c.KeyFile = cert, key })
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(http2Preface); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); isTimeout(err) {
		t.Fatalf("plaintext connection to the TLS port not closed: %v", err)
	}
	e := waitLog(t, logs, "garbage instead of a gRPC hello")
	if !strings.HasPrefix(e.ContextMap()["peer"].(string), "127.0.0.1:") {
		t.Errorf("logged %v", e.ContextMap())
	}
}
