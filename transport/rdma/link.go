package rdma

import (
	"fmt"
	"time"
)

// Link detection. A reliable-connected queue pair has no keepalive: an
// idle one whose path died (a cut cable, a dead switch port, a host that
// lost power) notices nothing until it next transmits, and a busy one
// only when the device's retry counter runs out. A rank waiting in a
// receive would then wait for its collective's deadline. So, as the TCP
// transport does with keepalive and TCP_USER_TIMEOUT, every peer's link is
// watched by two rules, checked every LinkTimeout/4 by one goroutine:
//
//   - heartbeat: a queue pair that has posted nothing for LinkTimeout/4
//     sends a heartbeat (an eager message of kind ping, which the receiver
//     only counts, under the same credit rules as data), so an idle link
//     always has work outstanding now and then;
//   - acknowledgement: a send or RDMA write that stays unacknowledged for
//     LinkTimeout (no completion since the oldest was posted), or a queue
//     pair that waits for flow-control credit while nothing at all has
//     arrived from the peer for LinkTimeout, fails the peer with "link
//     rank A <-> rank B lost".
//
// Both are about the link: the remote device acknowledges requests by
// itself, so a peer process that is merely slow or stopped keeps its link
// (as with TCP; worker heartbeats and gossip catch those), except that a
// stopped process stops re-posting receives and, once its peer runs out
// of credit, is reported as a lost link too.

// DefaultLinkTimeout is Config.LinkTimeout's default, the TCP transport's.
const DefaultLinkTimeout = 4 * time.Second

// kindPing is a heartbeat: an eager message with no payload whose only
// effect at the receiver is its header's credit.
const kindPing = 5

// watchLinks runs the two rules until stop is closed.
func (t *Transport) watchLinks(stop <-chan struct{}) {
	defer close(t.watchDone)
	every := t.cfg.LinkTimeout / 4
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			for _, p := range t.peers {
				if p != nil {
					p.checkLink(now, every)
				}
			}
		}
	}
}

// checkLink applies the rules to one peer at now.
func (p *peer) checkLink(now time.Time, every time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	timeout := p.t.cfg.LinkTimeout
	switch {
	case p.unacked > 0 && now.Sub(p.ackedAt) >= timeout:
		p.failLocked(p.linkLost(fmt.Sprintf("%d request(s) unacknowledged for %v", p.unacked, now.Sub(p.ackedAt).Round(time.Millisecond))))
		return
	case len(p.outq) > 0 && now.Sub(p.heardAt) >= timeout && now.Sub(p.postedAt) >= timeout:
		p.failLocked(p.linkLost(fmt.Sprintf("waiting for flow-control credit with nothing received for %v", now.Sub(p.heardAt).Round(time.Millisecond))))
		return
	}
	if now.Sub(p.postedAt) >= every && p.unacked == 0 && len(p.outq) == 0 && p.sqFree > 0 && len(p.freeSlots) > 0 && p.sent+2 <= p.limit {
		if err := p.postLocked(&outMsg{hdr: header{kind: kindPing}}); err != nil {
			p.failLocked(err)
		}
	}
}

// linkLost is the error of a peer whose link failed a rule.
func (p *peer) linkLost(why string) error {
	return fmt.Errorf("link rank %d <-> rank %d lost: %s (a dead link, or rank %d's host or device is down)", p.t.cfg.Rank, p.rank, why, p.rank)
}
