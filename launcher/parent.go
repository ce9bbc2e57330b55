package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/strand-ml/strand/launcher/jobenv"
)

// LauncherGoneError is the cause of WatchLauncher's context when the
// process that launched this worker is gone.
type LauncherGoneError struct{ PID int }

func (e *LauncherGoneError) Error() string {
	return fmt.Sprintf("the launcher (pid %d) is gone (killed?); this worker exits with it", e.PID)
}

// WatchLauncher returns a context that ends, with a *LauncherGoneError as
// its cause, once the launcher that started this process (named by
// $STRAND_LAUNCHER_PID) is gone: its parent-death SIGHUP arrives (Linux)
// or the process's parent changes (polled). It also makes writes to a
// broken stdout/stderr pipe (the launcher read them) fail with an error
// instead of killing the process with SIGPIPE, so the worker can still
// leave the job saying why (to the coordinator, which may run elsewhere).
// Outside a launched job it returns a plain child of ctx.
func WatchLauncher(ctx context.Context) (context.Context, context.CancelFunc) {
	pid, err := strconv.Atoi(os.Getenv(jobenv.LauncherPID))
	if err != nil || pid <= 0 || os.Getppid() != pid {
		return context.WithCancel(ctx)
	}
	signal.Ignore(syscall.SIGPIPE)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		defer signal.Stop(hup)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			case <-t.C:
			}
			if os.Getppid() != pid {
				cancel(&LauncherGoneError{PID: pid})
				return
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}

// WithCause adds to err why ctx ended, when it ended for a reason of its
// own (such as a *LauncherGoneError) that err does not already carry: a
// collective interrupted by the context reports only "context canceled".
func WithCause(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if err == nil || cause == nil || errors.Is(cause, context.Canceled) || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w (%v)", err, cause)
}
