package collective

import (
	"context"
	"sync"
	"time"
)

// callCtx is a call's context: the caller's context plus the call's own
// deadline and cancellation (first cause wins). Every call record (call)
// embeds one and reuses it for the record's next call, so a call needs no
// context.WithTimeout or WithCancelCause (with
// their timer, channels and child registrations, about five allocations a
// call on each rank).
//
// Lifecycle: start (in begin) arms the deadline timer; the call's lanes
// and its transport calls use it as their context; end (when run
// returns) disarms it. The done channel is closed only when the call is
// cancelled, and is replaced by the next start only then: a call that
// succeeds leaves it open for the next one.
//
// Cancellation of the caller's context reaches the call through the
// communicator's parent watch (see Comm.watchParent), registered once per
// distinct parent rather than per call.
type callCtx struct {
	parent   context.Context
	deadline time.Time
	timer    *time.Timer // runs expire; made with the record, Reset per call

	mu    sync.Mutex
	done  chan struct{} // written only by start, while no lane runs
	err   error         // context.Canceled or context.DeadlineExceeded once cancelled
	cause error         // why it was cancelled (a lane's error, a dead rank, ...)
	live  bool          // between start and end
}

var _ context.Context = (*callCtx)(nil)

// start readies x for a call under parent that must end by deadline.
func (x *callCtx) start(parent context.Context, deadline time.Time) {
	x.mu.Lock()
	if x.done == nil || x.err != nil {
		x.done = make(chan struct{}) // the previous one was closed
	}
	x.parent, x.deadline = parent, deadline
	x.err, x.cause, x.live = nil, nil, true
	x.mu.Unlock()
	if x.timer == nil {
		x.timer = time.AfterFunc(time.Until(deadline), x.expire)
	} else {
		x.timer.Reset(time.Until(deadline))
	}
}

// end disarms x once its call has returned. A timer that fires late finds
// the call no longer live and does nothing.
func (x *callCtx) end() {
	x.timer.Stop()
	x.mu.Lock()
	x.live = false
	x.parent = context.Background() // drop the caller's context
	x.mu.Unlock()
}

// expire cancels the live call once its deadline has passed (a timer
// armed for an earlier call of this record may fire early for this one:
// it is ignored).
func (x *callCtx) expire() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.live && !time.Now().Before(x.deadline) {
		x.cancelLocked(context.DeadlineExceeded, context.DeadlineExceeded)
	}
}

// cancel ends the call's context with err (context.Canceled or
// DeadlineExceeded) and cause (nil means err). Only the first counts.
func (x *callCtx) cancel(err, cause error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.cancelLocked(err, cause)
}

func (x *callCtx) cancelLocked(err, cause error) {
	if x.err != nil || !x.live {
		return
	}
	if cause == nil {
		cause = err
	}
	x.err, x.cause = err, cause
	close(x.done)
}

// Cause is why the call was cancelled (like context.Cause), or nil.
func (x *callCtx) Cause() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cause
}

// Deadline implements context.Context: every call has one.
func (x *callCtx) Deadline() (time.Time, bool) { return x.deadline, true }

// Done implements context.Context. The channel is fixed for the whole
// call (start writes it before any lane runs).
func (x *callCtx) Done() <-chan struct{} { return x.done }

// Err implements context.Context.
func (x *callCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// Value implements context.Context: the caller's values.
func (x *callCtx) Value(key any) any { return x.parent.Value(key) }

// parentWatch propagates the cancellation of one caller context (one Done
// channel) to the calls started under it. A communicator keeps the watch
// of the latest parent registered between calls, so a training loop that
// passes the same cancellable context to every call registers once.
type parentWatch struct {
	done  <-chan struct{}
	stop  func() bool
	calls int // calls in flight under this parent
}

// watchParent finds or registers the watch for ctx (which has a Done
// channel) and counts a call under it; stale watches with no calls are
// dropped. Call with c.mu held.
func (c *Comm) watchParent(ctx context.Context) *parentWatch {
	d := ctx.Done()
	var w *parentWatch
	keep := c.parents[:0]
	for _, pw := range c.parents {
		switch {
		case pw.done == d:
			w = pw
		case pw.calls > 0:
		default:
			pw.stop()
			continue
		}
		keep = append(keep, pw)
	}
	clear(c.parents[len(keep):])
	c.parents = keep
	if w == nil {
		w = &parentWatch{done: d}
		w.stop = context.AfterFunc(ctx, func() { c.parentDone(w, ctx) })
		c.parents = append(c.parents, w)
	}
	w.calls++
	return w
}

// parentDone cancels the calls in flight under a cancelled parent.
func (c *Comm) parentDone(w *parentWatch, parent context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cl := range c.calls {
		if cl.watch == w {
			cl.cx.cancel(parent.Err(), context.Cause(parent))
		}
	}
	for i, pw := range c.parents {
		if pw == w {
			c.parents = append(c.parents[:i], c.parents[i+1:]...)
			break
		}
	}
}
