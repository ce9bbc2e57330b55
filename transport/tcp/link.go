package tcp

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// A data connection must notice that its path died (a partition of the
// network the transport is bound to, a host that lost power) within the
// job's failure-detection time, even when the control plane (coordinator,
// gossip) runs over another, healthy network and so never sees it. Two
// kernel mechanisms cover the two cases, with no traffic of our own:
//
//   - an idle socket (a rank waiting in a receive, nothing to send) sends
//     keepalive probes every LinkTimeout/5 after LinkTimeout/5 of
//     silence, and fails after 4 unanswered ones;
//   - a socket with unacknowledged data (a send or a stream of chunks in
//     flight) fails once its data stays unacknowledged for LinkTimeout
//     (TCP_USER_TIMEOUT, Linux).
//
// Both are answered by the peer's kernel, so a peer that is merely slow,
// busy or even stopped (SIGSTOP; caught by the worker heartbeats and
// gossip instead) keeps its links. A reader that drains every socket into
// the transport's own mailboxes means a zero window lasts only as long as
// the peer process is frozen.

// DefaultLinkTimeout is Config.LinkTimeout's default.
const DefaultLinkTimeout = 4 * time.Second

// watchLink arms keepalive and TCP_USER_TIMEOUT on a data socket.
func watchLink(c *net.TCPConn, d time.Duration) {
	if d <= 0 {
		return
	}
	probe := max(d/5, time.Second)
	_ = c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: probe, Interval: probe, Count: 4})
	_ = setUserTimeout(c, d)
}

// linkErr names a dead path as such: the kernel timed the connection out
// (ETIMEDOUT), so the link between the two ranks failed, not necessarily
// either process (a process that dies resets its connections instead).
func (p *peer) linkErr(err error) error {
	if !errors.Is(err, syscall.ETIMEDOUT) {
		return err
	}
	return fmt.Errorf("link rank %d <-> rank %d lost: no acknowledgement or keepalive answer within %v (a network partition, or rank %d's host is down): %w",
		p.t.cfg.Rank, p.rank, p.t.cfg.LinkTimeout, p.rank, err)
}
