package tcp

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sockopt(t *testing.T, tr *Transport, peer, stream, level, opt int) int {
	t.Helper()
	raw, err := tr.peers[peer].streams[stream].conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestDataSocketsWatchTheirLink: every data socket, dialed or accepted,
// carries TCP_USER_TIMEOUT = LinkTimeout and keepalive probing that fails
// a silent link within it; a negative LinkTimeout leaves the kernel's
// defaults.
func TestDataSocketsWatchTheirLink(t *testing.T) {
	ts := mustDial(t, 2, func(c *Config) { c.LinkTimeout = 3 * time.Second })
	for r, tr := range ts {
		p := 1 - r
		for s := range tr.peers[p].streams {
			if got := sockopt(t, tr, p, s, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); got != 3000 {
				t.Errorf("rank %d stream %d: TCP_USER_TIMEOUT %d ms, want 3000", r, s, got)
			}
			if sockopt(t, tr, p, s, unix.SOL_SOCKET, unix.SO_KEEPALIVE) == 0 {
				t.Errorf("rank %d stream %d: keepalive off", r, s)
			}
			idle := sockopt(t, tr, p, s, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
			intvl := sockopt(t, tr, p, s, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
			cnt := sockopt(t, tr, p, s, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
			if idle+intvl*cnt > 5 {
				t.Errorf("rank %d stream %d: keepalive gives up after %d s (idle %d + %d x %d), want within the link timeout", r, s, idle+intvl*cnt, idle, cnt, intvl)
			}
		}
	}
	off := mustDial(t, 2, func(c *Config) { c.LinkTimeout = -1 })
	if got := sockopt(t, off[0], 1, 0, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); got != 0 {
		t.Errorf("LinkTimeout < 0: TCP_USER_TIMEOUT %d, want the kernel's 0", got)
	}
}

// TestTimedOutLinkIsNamed: a connection the kernel timed out is reported
// as the link between the two ranks; other errors are left alone.
func TestTimedOutLinkIsNamed(t *testing.T) {
	p := &peer{t: &Transport{cfg: Config{Rank: 1, LinkTimeout: 4 * time.Second}}, rank: 3}
	err := p.linkErr(fmt.Errorf("read tcp 10.0.0.1:5->10.0.0.2:6: %w", syscall.ETIMEDOUT))
	if !strings.Contains(err.Error(), "link rank 1 <-> rank 3 lost") || !strings.Contains(err.Error(), "within 4s") || !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("timed-out link: %v", err)
	}
	other := errors.New("connection closed by peer without goodbye (process died?)")
	if got := p.linkErr(other); got != other {
		t.Errorf("a reset became %v", got)
	}
}
