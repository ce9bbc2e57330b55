package coordinator

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/mesh"
)

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestJobCAIsDerivedFromTheToken: every node derives the same CA from the
// token (byte for byte), another token gives another CA, and a
// coordinator certificate verifies against its token's CA only.
func TestJobCAIsDerivedFromTheToken(t *testing.T) {
	a1, err := JobCA("tok-1")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := JobCA("tok-1")
	b, _ := JobCA("tok-2")
	if !bytes.Equal(a1, a2) {
		t.Error("the same token gave two different CA certificates")
	}
	if bytes.Equal(a1, b) {
		t.Error("two tokens gave the same CA")
	}
	if _, err := JobCA(""); err == nil {
		t.Error("a CA from an empty token")
	}
	certPEM, _, err := IssueJobCert("tok-1", []string{"10.0.0.1", "node0"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseCert(t, certPEM)
	for _, c := range []struct {
		ca   []byte
		host string
		ok   bool
	}{{a1, "10.0.0.1", true}, {a1, "node0", true}, {b, "10.0.0.1", false}, {a1, "10.0.0.2", false}} {
		pool := x509.NewCertPool()
		pool.AddCert(parseCert(t, c.ca))
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: c.host})
		if (err == nil) != c.ok {
			t.Errorf("verify for %s against CA %x...: %v, want ok=%v", c.host, parseCert(t, c.ca).SubjectKeyId[:4], err, c.ok)
		}
	}
}

// TestCoordinatorOverJobCA: a coordinator serving a job certificate
// accepts a client that trusts the job CA, and refuses one that trusts
// another token's CA.
func TestCoordinatorOverJobCA(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := IssueJobCert(testToken, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := JobCA(testToken)
	other, _ := JobCA("another token")
	files := map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": ca, "other.pem": other}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, mesh.Mesh{DP: 1, TP: 1, PP: 1}, func(c *Config) {
		c.CertFile, c.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good, err := Dial(ClientConfig{Addr: s.Addr(), Token: testToken, CAFile: filepath.Join(dir, "ca.pem"), ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Join(ctx, &pb.JoinRequest{Host: "h", WantRank: -1}); err != nil {
		t.Fatalf("join trusting the job CA: %v", err)
	}
	bad, err := Dial(ClientConfig{Addr: s.Addr(), Token: testToken, CAFile: filepath.Join(dir, "other.pem"), ConnectTimeout: time.Second})
	if err == nil {
		defer bad.Close()
		if _, err := bad.Status(ctx); err == nil {
			t.Fatal("a client trusting another token's CA reached the coordinator")
		}
	}
}
