package coordinator

import (
	"crypto/sha256"
	"fmt"
	"log"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/strand-ml/strand/internal/ratelog"
)

// GossipConfig tunes memberlist failure detection. A rank that stops
// answering is declared dead at most about ProbeInterval + ProbeTimeout +
// SuspicionMult*ProbeInterval after it died (2.9 s with the defaults, inside
// the 5 s budget). Tighter settings detect sooner but risk declaring a
// merely slow process dead on a loaded machine, which fails the job.
type GossipConfig struct {
	ProbeInterval time.Duration // default 800ms
	ProbeTimeout  time.Duration // default 500ms
	SuspicionMult int           // default 2
	// Advertise is the IP other nodes reach this node at, when it binds a
	// wildcard address.
	Advertise string
	// Log receives memberlist's warnings and errors (packets that fail to
	// decrypt, garbage on the gossip port, failure verdicts), rate-limited
	// per peer host; its debug lines are dropped. Default: none.
	Log *zap.Logger
}

func (g GossipConfig) withDefaults() GossipConfig {
	if g.ProbeInterval <= 0 {
		g.ProbeInterval = 800 * time.Millisecond
	}
	if g.ProbeTimeout <= 0 {
		g.ProbeTimeout = 500 * time.Millisecond
	}
	if g.SuspicionMult <= 0 {
		g.SuspicionMult = 2
	}
	return g
}

// StartGossip starts a memberlist node called name on bindHost (a random
// port). Gossip is encrypted and authenticated with a key derived from the
// job token, so nodes of another job (or a stranger) cannot join. events
// may be nil. A wildcard bindHost ("", "0.0.0.0", "::") needs cfg.Advertise:
// memberlist would otherwise guess a private address, and there may be none
// (loopback-only hosts, network namespaces).
func StartGossip(name, bindHost, token string, cfg GossipConfig, events memberlist.EventDelegate) (*memberlist.Memberlist, error) {
	cfg = cfg.withDefaults()
	c := memberlist.DefaultLocalConfig()
	c.Name = name
	c.BindAddr = bindHost
	if ip := net.ParseIP(bindHost); bindHost == "" || (ip != nil && ip.IsUnspecified()) {
		if cfg.Advertise == "" {
			return nil, fmt.Errorf("gossip %s: binding all interfaces needs an advertise address", name)
		}
		if bindHost == "" {
			c.BindAddr = "0.0.0.0"
		}
		c.AdvertiseAddr = cfg.Advertise
	}
	c.BindPort = 0
	c.AdvertisePort = 0
	c.ProbeInterval = cfg.ProbeInterval
	c.ProbeTimeout = cfg.ProbeTimeout
	c.SuspicionMult = cfg.SuspicionMult
	// Small clusters get few independent confirmations of a suspicion, so
	// without this the timeout would stretch to 6x the minimum.
	c.SuspicionMaxTimeoutMult = 1
	c.GossipInterval = 100 * time.Millisecond
	c.Events = events
	key := sha256.Sum256([]byte("strand-gossip/" + token))
	c.SecretKey = key[:]
	c.Logger = log.New(&memberlistLog{rej: ratelog.New(cfg.Log, 0), node: name}, "", 0)
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("gossip %s on %s: %w", name, bindHost, err)
	}
	return ml, nil
}

// gossipAddr renders a memberlist node's address as host:port.
func gossipAddr(ml *memberlist.Memberlist) string {
	n := ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// rankFromGossipName parses the "rank-N" names workers use.
func rankFromGossipName(name string) (int, bool) {
	var r int
	if _, err := fmt.Sscanf(name, "rank-%d", &r); err != nil || fmt.Sprintf("rank-%d", r) != name {
		return 0, false
	}
	return r, true
}

// GossipName is the memberlist node name of a rank.
func GossipName(rank int) string { return fmt.Sprintf("rank-%d", rank) }

// memberlistLog turns memberlist's log lines ("[WARN] memberlist: Decrypt
// packet failed: ... from=1.2.3.4:5678") into rate-limited zap lines: warn
// for [WARN] and [ERR], info for [INFO], debug lines dropped. The key of
// the limiter is the line without its variable parts, per peer host, so a
// flood of bad packets from one host is one line per interval.
type memberlistLog struct {
	rej  *ratelog.Limiter
	node string
}

var (
	memberlistFrom  = regexp.MustCompile(`from=(\S+)`)
	memberlistLevel = regexp.MustCompile(`^\[(DEBUG|INFO|WARN|ERR|ERROR)\] (memberlist: )?`)
)

func (m *memberlistLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	lv := memberlistLevel.FindStringSubmatch(line)
	level := zapcore.WarnLevel
	if lv != nil {
		switch lv[1] {
		case "DEBUG":
			return len(p), nil
		case "INFO":
			level = zapcore.InfoLevel
		}
		line = line[len(lv[0]):]
	}
	from := ""
	if f := memberlistFrom.FindStringSubmatch(line); f != nil {
		from = f[1]
	}
	// the message up to its first colon is the kind of complaint
	kind := line
	if i := strings.IndexByte(kind, ':'); i > 0 {
		kind = kind[:i]
	}
	m.rej.Log(level, from, "gossip: "+kind, zap.String("node", m.node), zap.String("memberlist", line))
	return len(p), nil
}
