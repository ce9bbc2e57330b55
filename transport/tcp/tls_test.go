package tcp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/rendezvous"
)

// testTLS returns a mutual-TLS config whose certificate is signed by a
// fresh CA named name (two calls: two CAs that do not trust each other).
func testTLS(t testing.TB, name string) *tls.Config {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "rank"}, DNSNames: []string{"strand-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs: pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, ServerName: "strand-test", MinVersion: tls.VersionTLS13}
}

// TestTLSCarriesEveryKindOfMessage: with TLS (forced on loopback) small,
// split and chunked messages arrive intact, and the transport says which
// peers it reaches over TLS.
func TestTLSCarriesEveryKindOfMessage(t *testing.T) {
	cfg := testTLS(t, "job CA")
	ts := mustDial(t, 2, func(c *Config) { c.TLS, c.TLSLoopback, c.SplitBytes = cfg, true, 64<<10 })
	if got := ts[0].TLSPeers(); !slices.Equal(got, []int{1}) {
		t.Fatalf("rank 0 reaches %v over TLS, want [1]", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range []int{0, 1, 4096, 200 << 10, 3<<20 + 5} {
		msg := pattern(n, i)
		errc := make(chan error, 1)
		go func() { errc <- ts[1].Send(ctx, 0, 7, msg) }()
		got := make([]byte, n)
		if err := ts[0].Recv(ctx, 1, 7, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: equal %v, err %v", n, bytes.Equal(got, msg), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		col := newCollector(n)
		go func() { errc <- ts[0].Send(ctx, 1, 8, msg) }()
		if err := ts[1].PostRecvChunks(ctx, 0, 8, n, col).Wait(); err != nil {
			t.Fatal(err)
		}
		col.check(t, "chunked over TLS", msg)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSSkipsLoopback: the rule without TLSLoopback: sockets to a
// loopback address stay plaintext.
func TestTLSSkipsLoopback(t *testing.T) {
	ts := mustDial(t, 2, func(c *Config) { c.TLS = testTLS(t, "job CA") })
	if got := ts[1].TLSPeers(); len(got) != 0 {
		t.Fatalf("loopback sockets run TLS to %v", got)
	}
}

// TestTLSWrongCARefused: a rank whose certificate comes from another CA
// is refused: the dialer's error names the peer and the certificate
// problem (and is not retried), the listener logs the refusal.
func TestTLSWrongCARefused(t *testing.T) {
	logs := &syncBuf{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store := rendezvous.NewMem()
	cfgs := []*tls.Config{testTLS(t, "job CA"), testTLS(t, "another CA")}
	errs := make([]error, 2)
	took := make([]time.Duration, 2)
	start := time.Now()
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := Dial(ctx, Config{Rank: r, Size: 2, Store: store, JobID: "j", Token: "tok", Bind: "127.0.0.1:0",
				TLS: cfgs[r], TLSLoopback: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			errs[r], took[r] = err, time.Since(start)
			if tr != nil {
				tr.Close()
			}
		}()
	}
	wg.Wait()
	if errs[1] == nil || !errors.Is(errs[1], errTLS) || !strings.Contains(errs[1].Error(), "rank 0") ||
		!strings.Contains(errs[1].Error(), "certificate") {
		t.Fatalf("dialer error %v, want a TLS refusal naming rank 0 and the certificate", errs[1])
	}
	if took[1] > 4*time.Second {
		t.Errorf("the dialer kept retrying a certificate refusal for %v", took[1])
	}
	if errs[0] == nil {
		t.Fatal("the listener joined a rank of another CA")
	}
	if !strings.Contains(logs.String(), "refused connection") || !strings.Contains(logs.String(), "TLS handshake") {
		t.Errorf("the listener did not log the refused TLS handshake:\n%s", logs)
	}
}

// TestTLSDropsPlaintextAndGarbage: on a TLS listener a plaintext strand
// hello is dropped at once, a hello that stops halfway through a TLS
// record within the handshake timeout, and the job carries on.
func TestTLSDropsPlaintextAndGarbage(t *testing.T) {
	cfg := testTLS(t, "job CA")
	ts := mustDial(t, 2, func(c *Config) { c.TLS, c.TLSLoopback, c.HandshakeTimeout = cfg, true, 300*time.Millisecond })
	addr := ts[0].Addr().String()
	dropped := func(name string, hello []byte, within time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write(hello)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		reply, _ := io.ReadAll(c) // ends when the listener closes
		if d := time.Since(t0); d > within {
			t.Errorf("%s: dropped after %v, want within %v", name, d, within)
		}
		if bytes.Contains(reply, []byte("STRAND")) {
			t.Errorf("%s: the listener answered in plaintext: %q", name, reply)
		}
	}
	plain := (&hello{Version: ProtocolVersion, Flags: flagLittleEndian, From: 1, To: 0, Size: 2, Streams: 2, JobID: "test"}).encode()
	dropped("plaintext hello", plain, 5*time.Second)
	dropped("half a TLS record", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = ts[1].Send(ctx, 0, 1, []byte("still fine")) }()
	got := make([]byte, 10)
	if err := ts[0].Recv(ctx, 1, 1, got); err != nil || string(got) != "still fine" {
		t.Fatalf("%q %v", got, err)
	}
	if f, _ := ts[0].PeerFailures(); len(f) != 0 {
		t.Fatalf("the dropped connections caused failures: %v", f)
	}
}

// TestTLSConfigMustBeMutual: a TLS config that would not authenticate
// the peer is refused up front.
func TestTLSConfigMustBeMutual(t *testing.T) {
	cfg := testTLS(t, "job CA")
	cfg.ClientAuth = tls.NoClientCert
	_, errs := dialAll(t, 1, func(c *Config) { c.TLS = cfg })
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "mutual") {
		t.Fatalf("err = %v, want a refusal of a one-sided TLS config", errs[0])
	}
}
