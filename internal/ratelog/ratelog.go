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

// Limiter rate-limits log lines per (message, peer host). The zero value
// is not usable; New makes one. Safe for concurrent use.
type Limiter struct {
	log   *zap.Logger
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

// New returns a limiter writing to log (nil: nothing is logged) at most
// one line per key every every (DefaultEvery when <= 0).
func New(log *zap.Logger, every time.Duration) *Limiter {
	if log == nil {
		log = zap.NewNop()
	}
	if every <= 0 {
		every = DefaultEvery
	}
	return &Limiter{log: log, every: every, now: time.Now, keys: make(map[key]*entry)}
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
	k := key{msg, Host(peer)}
	now := l.now()
	l.mu.Lock()
	e := l.keys[k]
	if e == nil && len(l.keys) >= maxKeys {
		l.pruneLocked(now)
		if len(l.keys) >= maxKeys {
			k = key{msg, "(many peers)"}
			e = l.keys[k]
		}
	}
	if e == nil {
		e = &entry{}
		l.keys[k] = e
	} else if now.Sub(e.last) < l.every {
		e.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := e.suppressed
	e.last, e.suppressed = now, 0
	l.mu.Unlock()
	fields = append(fields, zap.String("peer", peer))
	if suppressed > 0 {
		fields = append(fields, zap.Int("repeats_suppressed", suppressed), zap.Duration("window", l.every))
	}
	if ce := l.log.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
}

// pruneLocked forgets keys whose last line is older than the interval
// (their suppressed count, at most one interval's worth, is dropped). It
// scans at most once per interval, so a flood costs O(1) per line.
func (l *Limiter) pruneLocked(now time.Time) {
	if now.Sub(l.lastPrune) < l.every {
		return
	}
	l.lastPrune = now
	for k, e := range l.keys {
		if now.Sub(e.last) >= l.every {
			delete(l.keys, k)
		}
	}
}
