package dirstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSetThenGetAcrossStores(t *testing.T) {
	dir := t.TempDir()
	a, b := New(dir), New(dir) // two handles, as two processes would have
	ctx := context.Background()
	done := make(chan []byte)
	go func() {
		v, err := b.Get(ctx, "strand/tcp/job/addr/3")
		if err != nil {
			t.Error(err)
		}
		done <- v
	}()
	time.Sleep(10 * time.Millisecond)
	if err := a.Set(ctx, "strand/tcp/job/addr/3", []byte("127.0.0.1:5")); err != nil {
		t.Fatal(err)
	}
	if v := <-done; string(v) != "127.0.0.1:5" {
		t.Fatalf("got %q", v)
	}
}

func TestGetHonoursDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := New(t.TempDir()).Get(ctx, "missing"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}
