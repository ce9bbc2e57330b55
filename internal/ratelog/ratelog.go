package ratelog

import (
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultEvery is the interval between two lines for one key.
const DefaultEvery = 30 * time.Second

// maxKeys bounds the limiter's memory: beyond it, entries older than the
// interval are dropped, and if none is, complaints share one key.
const maxKeys = 4096

// Gate decides which complaints to let through: at most one per key
// (message, peer host) every interval, counting the ones it holds back.
// It logs nothing itself, so any logger can sit behind it (Limiter is
// Gate + zap). Safe for concurrent use.
type Gate struct {
	every time.Duration
	now   func() time.Time

	mu        sync.Mutex
	keys      map[key]*entry
	lastPrune time.Time
}

type key struct{ msg, host string }

type entry struct {
	last       time.Time
	suppressed int
}

// NewGate lets one complaint per key through every every (DefaultEvery
// when <= 0).
func NewGate(every time.Duration) *Gate {
	if every <= 0 {
		every = DefaultEvery
	}
	return &Gate{every: every, now: time.Now, keys: make(map[key]*entry)}
}

// Every is the gate's interval.
func (g *Gate) Every() time.Duration { return g.every }

// Allow reports whether a complaint msg about peer (host:port or host)
// may be logged now, and how many for the same key it held back since the
// last one it let through.
func (g *Gate) Allow(peer, msg string) (ok bool, suppressed int) {
	k := key{msg, Host(peer)}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.keys[k]
	if e == nil && len(g.keys) >= maxKeys {
		g.pruneLocked(now)
		if len(g.keys) >= maxKeys {
			k = key{msg, "(many peers)"}
			e = g.keys[k]
		}
	}
	if e == nil {
		e = &entry{}
		g.keys[k] = e
	} else if now.Sub(e.last) < g.every {
		e.suppressed++
		return false, 0
	}
	suppressed = e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
}

// pruneLocked forgets keys whose last line is older than the interval
// (their suppressed count, at most one interval's worth, is dropped). It
// scans at most once per interval, so a flood costs O(1) per complaint.
func (g *Gate) pruneLocked(now time.Time) {
	if now.Sub(g.lastPrune) < g.every {
		return
	}
	g.lastPrune = now
	for k, e := range g.keys {
		if now.Sub(e.last) >= g.every {
			delete(g.keys, k)
		}
	}
}

// Limiter rate-limits zap log lines per (message, peer host). New makes
// one. Safe for concurrent use.
type Limiter struct {
	log  *zap.Logger
	gate *Gate
}

// New returns a limiter writing to log (nil: nothing is logged) at most
// one line per key every every (DefaultEvery when <= 0).
func New(log *zap.Logger, every time.Duration) *Limiter {
	if log == nil {
		log = zap.NewNop()
	}
	return &Limiter{log: log, gate: NewGate(every)}
}

// Host is the host part of a "host:port" peer address (the port of an
// incoming connection changes with every attempt), or addr unchanged.
func Host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Warn logs msg at warn level with the peer's address and fields, unless
// a line with the same msg about the same peer host was logged less than
// the interval ago.
func (l *Limiter) Warn(peer, msg string, fields ...zap.Field) {
	l.Log(zapcore.WarnLevel, peer, msg, fields...)
}

// Log is Warn at another level.
func (l *Limiter) Log(level zapcore.Level, peer, msg string, fields ...zap.Field) {
	if !l.log.Core().Enabled(level) {
		return
	}
	ok, suppressed := l.gate.Allow(peer, msg)
	if !ok {
		return
	}
	fields = append(fields, zap.String("peer", peer))
	if suppressed > 0 {
		fields = append(fields, zap.Int("repeats_suppressed", suppressed), zap.Duration("window", l.gate.every))
	}
	if ce := l.log.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
}
