package collective

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPointToPointTimeoutNamesThePeer: a pipeline receive whose sender
// never sends fails by the communicator's deadline, naming the call, its
// sequence number, both ranks and how long it waited, as a collective's
// timeout does; under a caller's deadline, that deadline is reported.
func TestPointToPointTimeoutNamesThePeer(t *testing.T) {
	for _, w := range []struct {
		name string
		mk   world
	}{{"loopback", loopbackWorld}, {"tcp", tcpWorld}} {
		t.Run(w.name, func(t *testing.T) {
			ts := w.mk(t, 2)
			cs := make([]*Comm, 2)
			for r := range cs {
				c, err := New(ts[r], []int{0, 1}, Options{Name: "pp", Timeout: 300 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				cs[r] = c
			}
			ctx := context.Background()
			err := cs[1].Recv(ctx, F32(make([]float32, 4)), 0)
			if err == nil || !errors.Is(err, context.DeadlineExceeded) ||
				!strings.Contains(err.Error(), "recv seq 0 (rank 1 with rank 0): timed out after 300ms waiting for rank 0") {
				t.Fatalf("receive from a silent sender: %v", err)
			}
			// a caller's own deadline is the one reported
			dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			err = cs[0].Recv(dctx, F32(make([]float32, 4)), 1)
			if err == nil || !strings.Contains(err.Error(), "recv seq 0 (rank 0 with rank 1): timed out after") {
				t.Fatalf("receive under the caller's deadline: %v", err)
			}
		})
	}
}
