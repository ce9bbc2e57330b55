package rendezvous

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemGetWaitsForSet(t *testing.T) {
	s := NewMem()
	got := make(chan []byte, 1)
	go func() {
		v, err := s.Get(context.Background(), "a")
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	time.Sleep(10 * time.Millisecond)
	if err := s.Set(context.Background(), "a", []byte("addr")); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if string(v) != "addr" {
			t.Fatalf("got %q", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get did not return after Set")
	}
}

func TestMemGetHonoursDeadline(t *testing.T) {
	s := NewMem()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.Get(ctx, "missing")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestPrefixedKeysAreSeparate(t *testing.T) {
	s := NewMem()
	a, b := Prefixed(s, "g1/"), Prefixed(s, "g2/")
	ctx := context.Background()
	_ = a.Set(ctx, "k", []byte("1"))
	_ = b.Set(ctx, "k", []byte("2"))
	va, _ := a.Get(ctx, "k")
	vb, _ := s.Get(ctx, "g2/k")
	if string(va) != "1" || string(vb) != "2" {
		t.Fatalf("got %q %q", va, vb)
	}
}
