package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLocalJobOverTLS runs the smoke test with the coordinator behind TLS
// (a self-signed certificate for 127.0.0.1 that the workers trust).
func TestLocalJobOverTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "strand e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	j := start(t, nil, "strand", "check", "--nproc", "2", "--tls-cert", cert, "--tls-key", keyFile)
	if code := j.wait(t, 60*time.Second); code != 0 || !strings.Contains(j.out.String(), "check passed") {
		t.Fatalf("exit %d:\n%s", code, j.out)
	}
}

// TestTLSAutoAcrossHosts runs a 2-node job across network namespaces with
// --tls-auto: each node derives the job CA from the token, node 0's
// coordinator serves a certificate signed by it, and the workers of both
// nodes trust it; the no-TLS warning a plain multi-node job prints is
// absent. A node with another token cannot join.
func TestTLSAutoAcrossHosts(t *testing.T) {
	h := twoHosts(t, "t")
	coord := ipA + ":29521"
	a := h.node(t, h.nsA, 0, coord, "--tp", "2", "--tls-auto")
	b := h.node(t, h.nsB, 1, coord, "--tp", "2", "--tls-auto")
	ca, cb := a.wait(t, 90*time.Second), b.wait(t, 90*time.Second)
	if ca != 0 || cb != 0 || !strings.Contains(a.out.String(), "check passed: 4 ranks") {
		t.Fatalf("exit %d %d\nnode 0:\n%s\nnode 1:\n%s", ca, cb, a.out, b.out)
	}
	if !strings.Contains(a.out.String(), "TLS with the job CA derived from the token") || !strings.Contains(a.out.String(), `"serves_coordinator": true`) {
		t.Errorf("node 0 does not say it serves the coordinator over the job CA:\n%s", a.out)
	}
	if strings.Contains(a.out.String()+b.out.String(), "NO TLS") {
		t.Errorf("a --tls-auto job warned about missing TLS:\n%s\n%s", a.out, b.out)
	}
}

// TestMultiNodeWithoutTLSWarns: the same job without TLS warns on every
// node that the token crosses the network in the clear.
func TestMultiNodeWithoutTLSWarns(t *testing.T) {
	h := twoHosts(t, "w")
	coord := ipA + ":29522"
	a := h.node(t, h.nsA, 0, coord, "--tp", "2")
	b := h.node(t, h.nsB, 1, coord, "--tp", "2")
	if ca, cb := a.wait(t, 90*time.Second), b.wait(t, 90*time.Second); ca != 0 || cb != 0 {
		t.Fatalf("exit %d %d\nnode 0:\n%s\nnode 1:\n%s", ca, cb, a.out, b.out)
	}
	for i, out := range []string{a.out.String(), b.out.String()} {
		if !strings.Contains(out, "NO TLS") {
			t.Errorf("node %d did not warn about running without TLS:\n%s", i, out)
		}
	}
}
