package ratelog

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func newTest(every time.Duration) (*Limiter, *observer.ObservedLogs, *time.Time) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := New(zap.New(core), every)
	now := time.Unix(1000, 0)
	l.gate.now = func() time.Time { return now }
	return l, logs, &now
}

// TestOneLinePerPeerHostPerInterval: a flood from one host (any port)
// logs one line per interval, the next line counting the repeats; other
// hosts and other messages have their own budget.
func TestOneLinePerPeerHostPerInterval(t *testing.T) {
	l, logs, now := newTest(10 * time.Second)
	for i := 0; i < 1000; i++ {
		l.Warn(fmt.Sprintf("10.0.0.1:%d", 40000+i), "garbage hello")
	}
	l.Warn("10.0.0.2:5", "garbage hello")
	l.Warn("10.0.0.1:6", "wrong token")
	if n := logs.Len(); n != 3 {
		t.Fatalf("%d lines for a flood from one host plus two other complaints, want 3", n)
	}
	first := logs.All()[0]
	if first.Level != zapcore.WarnLevel || first.ContextMap()["peer"] != "10.0.0.1:40000" {
		t.Errorf("first line %v %v, want a warning with the peer address", first.Level, first.ContextMap())
	}
	*now = now.Add(11 * time.Second)
	l.Warn("10.0.0.1:9", "garbage hello")
	last := logs.All()[logs.Len()-1]
	if got := last.ContextMap()["repeats_suppressed"]; got != int64(999) {
		t.Errorf("line after the interval reports %v suppressed repeats, want 999", got)
	}
}

// TestKeysAreBounded: a flood from ever new hosts keeps at most maxKeys
// entries and still logs (under one shared key) once the table is full.
func TestKeysAreBounded(t *testing.T) {
	l, logs, _ := newTest(time.Minute)
	for i := 0; i < 3*maxKeys; i++ {
		l.Warn(fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255), "garbage hello")
	}
	if len(l.gate.keys) > maxKeys+1 {
		t.Errorf("%d keys, bound %d", len(l.gate.keys), maxKeys)
	}
	if n := logs.Len(); n != maxKeys+1 {
		t.Errorf("%d lines, want %d (one per host until full, then one shared)", n, maxKeys+1)
	}
}
