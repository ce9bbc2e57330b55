package coordinator

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// A job CA lets a multi-node job run its coordinator over TLS with no
// certificate files to distribute: every node derives the same CA key
// from the job token (the secret the scheduler or operator already gives
// every node), node 0 issues its coordinator a certificate signed by it,
// and every worker trusts that CA. Whoever holds the token could derive
// the CA, but could join the job anyway; a network observer without it
// sees neither the token nor the traffic.

// jobCAKey derives the job CA's Ed25519 key from the token (HKDF-SHA256).
func jobCAKey(token string) (ed25519.PrivateKey, error) {
	if token == "" {
		return nil, errors.New("job CA: a job token is required")
	}
	seed, err := hkdf.Key(sha256.New, []byte(token), []byte("strand job CA"), "strand job CA key v1", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("job CA: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// jobCATemplate is the CA certificate every node builds alike (Ed25519
// signatures are deterministic, so the bytes agree too).
func jobCATemplate(key ed25519.PrivateKey) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strand job CA"},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		SubjectKeyId: func() []byte { h := sha256.Sum256(key.Public().(ed25519.PublicKey)); return h[:20] }(),
	}
}

// JobCA returns the PEM certificate of the CA derived from token.
func JobCA(token string) ([]byte, error) {
	key, err := jobCAKey(token)
	if err != nil {
		return nil, err
	}
	tmpl := jobCATemplate(key)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("job CA: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// IssueJobCert returns a server certificate and its key (PEM) for the
// coordinator, valid for hosts (IP addresses or DNS names), signed by the
// CA derived from token. The certificate's key is fresh for every call.
func IssueJobCert(token string, hosts []string) (certPEM, keyPEM []byte, err error) {
	caKey, err := jobCAKey(token)
	if err != nil {
		return nil, nil, err
	}
	caTmpl := jobCATemplate(caKey)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "strand coordinator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("job certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// DataTLSName is the name every data-transport certificate carries and
// every rank checks (ranks have no host names of their own to check: the
// job CA is what authenticates a peer).
const DataTLSName = "strand-data"

// JobDataTLS returns the TLS config of a rank's data transport in a job
// with TLS: a fresh certificate for DataTLSName signed by the CA derived
// from token (server and client use), trusted roots and client CAs that
// are that CA alone, mutual authentication required, TLS 1.3. Every rank
// of the job derives the same CA, so ranks authenticate each other with
// no certificate files to distribute (see the comment at the top).
func JobDataTLS(token string) (*tls.Config, error) {
	caPEM, err := JobCA(token)
	if err != nil {
		return nil, err
	}
	caKey, err := jobCAKey(token)
	if err != nil {
		return nil, err
	}
	caTmpl := jobCATemplate(caKey)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "strand rank"}, DNSNames: []string{DataTLSName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("job data certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("job CA: certificate does not parse")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		ServerName: DataTLSName, MinVersion: tls.VersionTLS13,
	}, nil
}
