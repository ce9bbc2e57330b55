package spin

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestReceiveGetsValuesSentDuringAndAfterTheSpin(t *testing.T) {
	ch := make(chan int)
	go func() {
		ch <- 1                           // during the spin
		time.Sleep(20 * time.Millisecond) // after it: Receive must block, not give up
		ch <- 2
		close(ch)
	}()
	for want := 1; want <= 2; want++ {
		v, ok := Receive(ch, time.Millisecond)
		if !ok || v != want {
			t.Fatalf("Receive = %d, %v; want %d, true", v, ok, want)
		}
	}
	if _, ok := Receive(ch, time.Millisecond); ok {
		t.Fatal("Receive on a closed channel reported ok")
	}
}

func TestAwait(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(time.Millisecond)
		n.Add(1)
		n.Add(1)
	}()
	if !Await(&n, 2, 5*time.Second, 100*time.Microsecond) {
		t.Fatalf("Await gave up with n = %d", n.Load())
	}
	start := time.Now()
	if Await(&n, 3, 2*time.Millisecond, 100*time.Microsecond) {
		t.Fatal("Await reported a count that was never reached")
	}
	if d := time.Since(start); d < 2*time.Millisecond {
		t.Fatalf("Await gave up after %v, before its 2ms budget", d)
	}
}
