//go:build !linux

package tcp

import (
	"net"
	"time"
)

// setUserTimeout is Linux's TCP_USER_TIMEOUT; elsewhere only keepalive
// detects a dead link (and data in flight waits for the kernel's
// retransmission timeout).
func setUserTimeout(c *net.TCPConn, d time.Duration) error { return nil }
