package launcher

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/strand-ml/strand/coordinator"
)

// jobTLS fills in the TLS files of a --tls-auto job: the CA every node
// derives from the job token (coordinator.JobCA), which the workers trust,
// and on node 0 a coordinator certificate signed by it for the addresses
// the coordinator is reached at. The files live in a temporary directory
// that cleanup removes. Explicit --tls-cert/--tls-ca files win; derived
// reports whether the job CA is used.
func (c *Common) jobTLS(nodeRank int, coord string) (cleanup func(), derived bool, err error) {
	cleanup = func() {}
	if !c.TLSAuto || c.TLSCert != "" || c.TLSCA != "" {
		return cleanup, false, nil
	}
	if c.Token == "" {
		return cleanup, false, fmt.Errorf("launcher: --tls-auto derives the job CA from the job token, and there is none")
	}
	dir, err := os.MkdirTemp("", "strand-tls-")
	if err != nil {
		return cleanup, false, fmt.Errorf("launcher: --tls-auto: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	ca, err := coordinator.JobCA(c.Token)
	if err == nil {
		c.TLSCA = filepath.Join(dir, "ca.pem")
		err = os.WriteFile(c.TLSCA, ca, 0o600)
	}
	if err == nil && nodeRank == 0 {
		hosts := []string{"127.0.0.1", "::1", "localhost"}
		if h, _, serr := net.SplitHostPort(coord); serr == nil {
			hosts = append(hosts, h)
		}
		if adv, aerr := AdvertiseIP(coord); aerr == nil {
			hosts = append(hosts, adv)
		}
		if hn, herr := os.Hostname(); herr == nil {
			hosts = append(hosts, hn)
		}
		var cert, key []byte
		if cert, key, err = coordinator.IssueJobCert(c.Token, hosts); err == nil {
			c.TLSCert, c.TLSKey = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
			if err = os.WriteFile(c.TLSCert, cert, 0o600); err == nil {
				err = os.WriteFile(c.TLSKey, key, 0o600)
			}
		}
	}
	if err != nil {
		cleanup()
		return func() {}, false, fmt.Errorf("launcher: --tls-auto: %w", err)
	}
	return cleanup, true, nil
}
