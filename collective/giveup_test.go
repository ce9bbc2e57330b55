package collective

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSurvivorsThatGiveUpAreNotBlamed is the in-process form of
// TestKilledProcessIsNamedBySurvivors: a rank dies in the middle of large
// (split, multi-segment) all-reduces over TCP, and every survivor, like a
// process that exits on error, closes its transport as soon as its call
// fails. Survivors give up while frames are half written or half read;
// each must still name the dead rank and only it, not a neighbour whose
// connection closed because it gave up first.
func TestSurvivorsThatGiveUpAreNotBlamed(t *testing.T) {
	if testing.Short() {
		t.Skip("several worlds of 4 MiB all-reduces")
	}
	const n, victim = 4, 2
	for rep := 0; rep < 4; rep++ {
		t.Run(fmt.Sprint(rep), func(t *testing.T) {
			ts := tcpWorld(t, n)
			started := make(chan struct{})
			go func() { // kill the victim a little into its third call
				<-started
				time.Sleep(time.Duration(rep) * 3 * time.Millisecond)
				crash(ts[victim])
			}()
			errs := runEach(ts, Options{Timeout: 10 * time.Second}, func(r int, c *Comm) error {
				buf := make(F32, 1<<20)
				for k := 0; ; k++ {
					if r == victim && k == 2 {
						close(started)
					}
					if err := c.AllReduce(context.Background(), buf, Sum); err != nil {
						if r != victim {
							ts[r].Close() // exit on error, as a process does
						}
						return err
					}
				}
			})
			for r, err := range errs {
				if r == victim {
					continue
				}
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("rank(s) [%d] failed", victim)) || !strings.Contains(err.Error(), "allreduce seq") {
					t.Errorf("rank %d: %v, want an allreduce error naming rank %d only", r, err, victim)
				}
			}
		})
	}
}
