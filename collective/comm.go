package collective

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/strand-ml/strand/transport"
)

// Options tune a communicator. The zero value is ready to use.
type Options struct {
	// Name distinguishes communicators over the same ranks (it enters the
	// tag space and the fingerprint). Every member must use the same name.
	Name string
	// Timeout bounds every call whose context has no deadline (default 5m).
	Timeout time.Duration
	// SmallBytes: below this AllReduce uses recursive doubling, Broadcast
	// and Reduce binomial trees (latency-bound); at or above, the ring and
	// chain algorithms (bandwidth-bound). Default 64 KiB.
	SmallBytes int
	// SegmentBytes is the pipelining unit of the ring and chain
	// algorithms. Default 1 MiB, or 4 MiB over a transport with
	// transport.Caps.ChunkedRecv (TCP, shared memory): there a reducing receive is combined chunk by chunk as it
	// arrives, so the segment no longer sets the reduction's cache
	// footprint, and fewer, larger messages cost less CPU (about 5-18%
	// less per 64 MiB all-reduce on 2 and 4 ranks over loopback TCP).
	// Every member must use the same value.
	SegmentBytes int
	// Flight, when set, records every call for hang diagnosis; share one
	// recorder among a rank's communicators.
	Flight *FlightRecorder
	// Nodes, when set, labels each group rank (group order) with the node
	// it runs on (ranks with one label share memory). When the group
	// spans several nodes with the same number (at least 2) of its ranks
	// on each, large all-reduces run hierarchically (hier.go): inside
	// each node, then between nodes, then inside again. Every member must
	// pass the same labels (they enter the group's identity, so a
	// disagreement is reported as a mismatch).
	Nodes []string
	// HierarchicalBytes is the smallest all-reduce that runs
	// hierarchically when Nodes allows (default 256 KiB): below it the
	// three phases' extra hops cost more than the bytes they keep off the
	// network (2 network namespaces x 2 ranks: 0.7-1.1x the flat TCP ring
	// at 64 KiB, 1.4-2.2x from 256 KiB up). Every member must use the same
	// value.
	HierarchicalBytes int
	// NoSharedMemory keeps the communicator exchanging messages even
	// where its ranks map each other's memory (window.go): for
	// benchmarks and tests of the message path. Every member must use
	// the same value.
	NoSharedMemory bool
}

func (o *Options) fill(caps transport.Caps) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.SmallBytes <= 0 {
		o.SmallBytes = 64 << 10
	}
	if o.HierarchicalBytes <= 0 {
		o.HierarchicalBytes = 256 << 10
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 1 << 20
		if caps.ChunkedRecv {
			o.SegmentBytes = 4 << 20
		}
	}
}

// Comm is a communicator: a group of ranks of one transport that run
// collectives together. Every member must issue the same collectives in
// the same order (concurrent async calls included); the i-th call of each
// member forms one collective, checked by fingerprint.
//
// Ranks passed to methods (root, peer) are group indices in [0, Size());
// errors name global (transport) ranks, the numbers in every log.
//
// After a call fails the communicator is unusable: later calls return the
// first failure. Recovery (restart, shrink) is the coordinator's decision.
type Comm struct {
	t     transport.Transport
	caps  transport.Caps      // t.Caps(), read once
	soon  []transport.RecvOpt // {transport.Soon}: latency-bound receives' options, shared so that passing them allocates nothing
	ranks []int               // global ranks in group order
	me    int                 // this rank's group index
	group uint64
	tags  uint64 // top 24 bits of every tag this communicator uses
	opts  Options
	topo  *topology // nil: flat algorithms only
	// fpGroup identifies the group in fingerprints: group, and the node
	// layout when it is used.
	fpGroup uint64

	mu        sync.Mutex
	seq       uint64
	broken    error
	calls     map[*call]struct{} // in flight, to abort when a member dies
	dead      map[int]error      // global rank -> why it failed
	sendSeq   []uint64           // point-to-point messages sent, per group peer
	recvSeq   []uint64
	staging   [][]byte          // free receive-reduce staging buffers
	plans     map[planKey]*Plan // recent all-reduce plans (see cachedPlan)
	freeCalls []*call           // recycled call records (see newCallLocked)
	parents   []*parentWatch    // callers' cancellable contexts being watched
	wseq      uint64            // window calls begun (window.go)

	// Shared windows (window.go): winCapable is fixed at New; the first
	// call maps the windows and closes winReady, after which win (nil if
	// the members cannot share memory) is read without the lock.
	winCapable bool
	winReady   chan struct{}
	win        *window
	closed     bool // Close was called: no more calls
	stop       chan struct{}
	watching   sync.WaitGroup
}

const (
	tagGroupShift = 40
	tagP2P        = 1 << 39
	tagSeqMask    = tagP2P - 1
)

// New builds a communicator over the given global ranks (in group order,
// e.g. from mesh.Mesh.Group) of transport t, which must include t.Rank().
// Creating it does not communicate.
func New(t transport.Transport, ranks []int, opts Options) (*Comm, error) {
	if t == nil {
		return nil, errors.New("collective: nil transport")
	}
	if len(ranks) == 0 {
		return nil, errors.New("collective: empty group")
	}
	me := -1
	seen := make(map[int]bool, len(ranks))
	for i, r := range ranks {
		if r < 0 || r >= t.Size() {
			return nil, fmt.Errorf("collective: group rank %d outside transport of size %d", r, t.Size())
		}
		if seen[r] {
			return nil, fmt.Errorf("collective: rank %d appears twice in group %v", r, ranks)
		}
		seen[r] = true
		if r == t.Rank() {
			me = i
		}
	}
	if me < 0 {
		return nil, fmt.Errorf("collective: this rank (%d) is not in group %v", t.Rank(), ranks)
	}
	caps := t.Caps()
	opts.fill(caps)
	if opts.Nodes != nil && len(opts.Nodes) != len(ranks) {
		return nil, fmt.Errorf("collective: %d node labels for a group of %d ranks", len(opts.Nodes), len(ranks))
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%v", opts.Name, ranks)
	group := h.Sum64()
	// The node layout changes the plans, so it enters the fingerprint's
	// group (a disagreement is a mismatch) but not the tags (so the
	// disagreeing ranks still meet and see it).
	fpGroup := group
	topo := newTopology(opts.Nodes)
	if topo != nil {
		fmt.Fprintf(h, "|nodes %v", topo.local)
		fpGroup = h.Sum64()
	}
	c := &Comm{
		t: t, caps: caps, soon: []transport.RecvOpt{transport.Soon}, ranks: slices.Clone(ranks), me: me, group: group, fpGroup: fpGroup, topo: topo,
		tags:    group >> tagGroupShift << tagGroupShift,
		opts:    opts,
		calls:   make(map[*call]struct{}),
		dead:    make(map[int]error),
		sendSeq: make([]uint64, len(ranks)),
		recvSeq: make([]uint64, len(ranks)),
		stop:    make(chan struct{}),
	}
	if c.winCapable = c.windowCapable(); c.winCapable {
		c.winReady = make(chan struct{})
	}
	if caps.Notifies && len(ranks) > 1 {
		c.watching.Add(1)
		go c.watch()
	}
	return c, nil
}

// Rank is this rank's index in the group.
//
// A nil *Comm is a group of one (a degree-1 axis of the mesh, a single
// process): its rank is 0, its size 1, its collectives leave the buffers
// as they are (AllToAll copies in to out) and point-to-point calls fail.
// Callers never test for nil themselves.
func (c *Comm) Rank() int {
	if c == nil {
		return 0
	}
	return c.me
}

// Size is the number of ranks in the group.
func (c *Comm) Size() int {
	if c == nil {
		return 1
	}
	return len(c.ranks)
}

// Ranks returns the group's global ranks in group order.
func (c *Comm) Ranks() []int { return slices.Clone(c.ranks) }

// Nodes returns the group's global ranks by node when large all-reduces
// run hierarchically (Options.Nodes), else nil.
func (c *Comm) Nodes() [][]int {
	if c.topo == nil {
		return nil
	}
	out := make([][]int, len(c.topo.local))
	for n, l := range c.topo.local {
		for _, g := range l {
			out[n] = append(out[n], c.ranks[g])
		}
	}
	return out
}

// Close stops the communicator's failure watcher and unmaps its shared
// windows (window.go), unless a call is still in flight (its memory then
// goes with the process). Later calls fail. It does not close the
// transport, which other communicators may share.
func (c *Comm) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	c.closed = true
	if c.win != nil && len(c.calls) == 0 {
		c.win.release()
		c.win = nil
	}
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	for _, w := range c.parents {
		w.stop()
	}
	c.parents = nil
	c.mu.Unlock()
	c.watching.Wait()
	return nil
}

// RankFailedError reports that group members died during (or before) a call.
type RankFailedError struct {
	Ranks []int // global ranks
	Err   error
}

func (e *RankFailedError) Error() string {
	return fmt.Sprintf("rank(s) %v failed: %v", e.Ranks, e.Err)
}
func (e *RankFailedError) Unwrap() error { return e.Err }

// watch turns transport failure announcements about group members into
// immediate aborts of every call in flight.
func (c *Comm) watch() {
	defer c.watching.Done()
	for {
		failed, next := c.t.PeerFailures()
		c.mu.Lock()
		for _, pe := range failed {
			if !slices.Contains(c.ranks, pe.Peer) || c.dead[pe.Peer] != nil {
				continue
			}
			c.dead[pe.Peer] = pe
		}
		if len(c.dead) > 0 {
			// Under c.mu: a call record leaves c.calls (under c.mu)
			// before it is recycled, so no later call is cancelled.
			cause := c.deadErrLocked()
			for cl := range c.calls {
				cl.cancel(cause)
			}
		}
		c.mu.Unlock()
		select {
		case <-next:
		case <-c.stop:
			return
		}
	}
}

// noteFailures records group members the transport reports dead, at
// once rather than when the watcher goroutine gets to it.
func (c *Comm) noteFailures() {
	if !c.caps.Notifies {
		return
	}
	failed, _ := c.t.PeerFailures()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pe := range failed {
		if slices.Contains(c.ranks, pe.Peer) && c.dead[pe.Peer] == nil {
			c.dead[pe.Peer] = pe
		}
	}
}

func (c *Comm) deadErrLocked() *RankFailedError {
	var ranks []int
	var errs []error
	for r, err := range c.dead {
		ranks = append(ranks, r)
		errs = append(errs, err)
	}
	slices.Sort(ranks)
	if len(errs) == 1 {
		return &RankFailedError{Ranks: ranks, Err: errs[0]}
	}
	return &RankFailedError{Ranks: ranks, Err: errors.Join(errs...)}
}

// Chunk is the element range [lo, hi) of a count-element buffer that this
// rank owns in ReduceScatter and contributes in AllGather.
func (c *Comm) Chunk(count int) (lo, hi int) { return Chunk(count, c.Size(), c.Rank()) }

// Handle is an asynchronous collective in flight.
type Handle struct {
	done chan struct{}
	err  error
}

// Wait blocks until the collective finishes (returning its error) or ctx
// ends. The collective itself is bounded by the context it was started
// with, not by this one.
func (h *Handle) Wait(ctx context.Context) error {
	select {
	case <-h.done:
		return h.err
	case <-ctx.Done():
		return fmt.Errorf("wait: %w", ctx.Err())
	}
}

// Done is closed when the collective has finished.
func (h *Handle) Done() <-chan struct{} { return h.done }

func failed(err error) *Handle {
	h := &Handle{done: make(chan struct{}), err: err}
	close(h.done)
	return h
}

// launch runs a prepared call on its own goroutine.
func launch(cl *call, err error) *Handle {
	if err != nil || cl == nil { // cl nil: nothing to do (a group of one)
		return failed(err)
	}
	h := &Handle{done: make(chan struct{})}
	go func() {
		h.err = cl.run()
		close(h.done)
	}()
	return h
}

func runNow(cl *call, err error) error {
	if err != nil || cl == nil { // cl nil: nothing to do (a group of one)
		return err
	}
	return cl.run()
}

func checkOp(k kind, op Op) error {
	if !op.valid() {
		return fmt.Errorf("%v: invalid reduction op %d", k, op)
	}
	return nil
}

func (c *Comm) checkRoot(k kind, root int) error {
	if root < 0 || root >= c.Size() {
		return fmt.Errorf("%v: root %d outside group of %d ranks", k, root, c.Size())
	}
	return nil
}

func checkBuf(k kind, buf Buffer) error {
	if buf == nil {
		return fmt.Errorf("%v: nil buffer", k)
	}
	return nil
}

// AllReduce combines buf across the group with op; every rank ends with
// the same bits. Small buffers use recursive doubling, large ones the
// pipelined ring.
func (c *Comm) AllReduce(ctx context.Context, buf Buffer, op Op) error {
	return runNow(c.allReduce(ctx, buf, op))
}

// AllReduceAsync starts AllReduce and returns at once; buf must not be
// touched until the handle's Wait returns.
func (c *Comm) AllReduceAsync(ctx context.Context, buf Buffer, op Op) *Handle {
	return launch(c.allReduce(ctx, buf, op))
}

func (c *Comm) allReduce(ctx context.Context, buf Buffer, op Op) (*call, error) {
	if err := errors.Join(checkBuf(kAllReduce, buf), checkOp(kAllReduce, op)); err != nil {
		return nil, err
	}
	dt, n, b := view(buf)
	if dt == 0 {
		return nil, fmt.Errorf("%v: unsupported buffer type (use F32, BF16 or F16)", kAllReduce)
	}
	if c == nil {
		return nil, nil
	}
	return c.begin(ctx, fingerprint{Kind: kAllReduce, Op: op, DType: dt, Count: uint64(n)}, (*Comm).allReducePlan, b, nil)
}

// allReducePlan is the plan of an all-reduce of fp.Count elements of
// fp.DType: recursive doubling below SmallBytes, else the pipelined ring,
// or the hierarchical rings when the group spans nodes (Options.Nodes).
func (c *Comm) allReducePlan(fp fingerprint) *Plan {
	n, count, dt := len(c.ranks), int(fp.Count), fp.DType
	if count*dt.Size() < c.opts.SmallBytes {
		return c.cachedPlan(planKey{kAllReduce, count, 0}, func() *Plan { return recursiveDoublingPlan(n, c.me, count) })
	}
	seg := c.segElems(dt)
	if c.topo != nil && count*dt.Size() >= c.opts.HierarchicalBytes {
		return c.cachedPlan(planKey{kAllReduce, count, seg}, func() *Plan { return hierAllReducePlan(c.topo, c.me, count, seg) })
	}
	return c.cachedPlan(planKey{kAllReduce, count, seg}, func() *Plan { return ringPlan(n, c.me, count, seg, true, true) })
}

// planKey names a cached plan: the operation, its element count and its
// segment length in elements (the rest is fixed per communicator).
type planKey struct {
	kind       kind
	count, seg int
}

// maxCachedPlans bounds the plan cache; a training step all-reduces a few
// fixed bucket sizes, so a handful of entries cover it.
const maxCachedPlans = 32

// cachedPlan returns the plan for k, building it on first use. Plans are
// read-only once built, so concurrent calls may share one; caching them
// keeps repeated calls (every training step's buckets) from allocating
// and rebuilding their step lists.
func (c *Comm) cachedPlan(k planKey, build func() *Plan) *Plan {
	c.mu.Lock()
	p := c.plans[k]
	c.mu.Unlock()
	if p != nil {
		return p
	}
	p = build()
	c.mu.Lock()
	if c.plans == nil || len(c.plans) >= maxCachedPlans {
		c.plans = make(map[planKey]*Plan) // start over: old sizes are likely stale
	}
	c.plans[k] = p
	c.mu.Unlock()
	return p
}

// ReduceScatter combines buf across the group with op and leaves this
// rank's share, buf[lo:hi] with lo, hi = c.Chunk(len), in place; the rest
// of buf is scratch afterwards.
func (c *Comm) ReduceScatter(ctx context.Context, buf Buffer, op Op) error {
	return runNow(c.reduceScatter(ctx, buf, op))
}

// ReduceScatterAsync is the asynchronous ReduceScatter.
func (c *Comm) ReduceScatterAsync(ctx context.Context, buf Buffer, op Op) *Handle {
	return launch(c.reduceScatter(ctx, buf, op))
}

func (c *Comm) reduceScatter(ctx context.Context, buf Buffer, op Op) (*call, error) {
	if err := errors.Join(checkBuf(kReduceScatter, buf), checkOp(kReduceScatter, op)); err != nil || c == nil {
		return nil, err
	}
	plan := func(*Comm, fingerprint) *Plan {
		return ringPlan(len(c.ranks), c.me, buf.Len(), c.segElems(buf.DType()), true, false)
	}
	return c.begin(ctx, fingerprint{Kind: kReduceScatter, Op: op, DType: buf.DType(), Count: uint64(buf.Len())}, plan, buf.bytes(), nil)
}

// AllGather fills all of buf from every rank's share: rank i contributes
// buf[Chunk(len(buf), size, i)].
func (c *Comm) AllGather(ctx context.Context, buf Buffer) error {
	return runNow(c.allGather(ctx, buf))
}

// AllGatherAsync is the asynchronous AllGather.
func (c *Comm) AllGatherAsync(ctx context.Context, buf Buffer) *Handle {
	return launch(c.allGather(ctx, buf))
}

func (c *Comm) allGather(ctx context.Context, buf Buffer) (*call, error) {
	if err := checkBuf(kAllGather, buf); err != nil || c == nil {
		return nil, err
	}
	plan := func(*Comm, fingerprint) *Plan {
		return ringPlan(len(c.ranks), c.me, buf.Len(), c.segElems(buf.DType()), false, true)
	}
	return c.begin(ctx, fingerprint{Kind: kAllGather, DType: buf.DType(), Count: uint64(buf.Len())}, plan, buf.bytes(), nil)
}

// Broadcast copies root's buf to every rank's buf.
func (c *Comm) Broadcast(ctx context.Context, buf Buffer, root int) error {
	return runNow(c.broadcast(ctx, buf, root))
}

// BroadcastAsync is the asynchronous Broadcast.
func (c *Comm) BroadcastAsync(ctx context.Context, buf Buffer, root int) *Handle {
	return launch(c.broadcast(ctx, buf, root))
}

func (c *Comm) broadcast(ctx context.Context, buf Buffer, root int) (*call, error) {
	if err := errors.Join(checkBuf(kBroadcast, buf), c.checkRoot(kBroadcast, root)); err != nil || c == nil {
		return nil, err
	}
	n, count := len(c.ranks), buf.Len()
	plan := func(*Comm, fingerprint) *Plan {
		if count*buf.DType().Size() < c.opts.SmallBytes {
			return treeBroadcastPlan(n, c.me, root, count)
		}
		return chainBroadcastPlan(n, c.me, root, count, c.segElems(buf.DType()))
	}
	return c.begin(ctx, fingerprint{Kind: kBroadcast, DType: buf.DType(), Root: int32(root), Count: uint64(count)}, plan, buf.bytes(), nil)
}

// Reduce combines buf across the group with op into root's buf. Other
// ranks' buffers are scratch afterwards.
func (c *Comm) Reduce(ctx context.Context, buf Buffer, op Op, root int) error {
	return runNow(c.reduce(ctx, buf, op, root))
}

// ReduceAsync is the asynchronous Reduce.
func (c *Comm) ReduceAsync(ctx context.Context, buf Buffer, op Op, root int) *Handle {
	return launch(c.reduce(ctx, buf, op, root))
}

func (c *Comm) reduce(ctx context.Context, buf Buffer, op Op, root int) (*call, error) {
	if err := errors.Join(checkBuf(kReduce, buf), checkOp(kReduce, op), c.checkRoot(kReduce, root)); err != nil || c == nil {
		return nil, err
	}
	n, count := len(c.ranks), buf.Len()
	plan := func(*Comm, fingerprint) *Plan {
		if count*buf.DType().Size() < c.opts.SmallBytes {
			return treeReducePlan(n, c.me, root, count)
		}
		return ringReducePlan(n, c.me, root, count, c.segElems(buf.DType()))
	}
	return c.begin(ctx, fingerprint{Kind: kReduce, Op: op, DType: buf.DType(), Root: int32(root), Count: uint64(count)}, plan, buf.bytes(), nil)
}

// Barrier returns once every rank of the group has entered it.
func (c *Comm) Barrier(ctx context.Context) error {
	if c == nil {
		return nil
	}
	return runNow(c.begin(ctx, fingerprint{Kind: kBarrier}, func(*Comm, fingerprint) *Plan { return barrierPlan(len(c.ranks), c.me) }, nil, nil))
}

// BarrierAsync is the asynchronous Barrier.
func (c *Comm) BarrierAsync(ctx context.Context) *Handle {
	if c == nil {
		return failed(nil)
	}
	return launch(c.begin(ctx, fingerprint{Kind: kBarrier}, func(*Comm, fingerprint) *Plan { return barrierPlan(len(c.ranks), c.me) }, nil, nil))
}

// AllToAll sends block j of in to rank j and stores rank i's block in
// block i of out. len(in) == len(out), a multiple of the group size;
// blocks are len/size elements.
func (c *Comm) AllToAll(ctx context.Context, in, out Buffer) error {
	return runNow(c.allToAll(ctx, in, out))
}

// AllToAllAsync is the asynchronous AllToAll.
func (c *Comm) AllToAllAsync(ctx context.Context, in, out Buffer) *Handle {
	return launch(c.allToAll(ctx, in, out))
}

func (c *Comm) allToAll(ctx context.Context, in, out Buffer) (*call, error) {
	if err := errors.Join(checkBuf(kAllToAll, in), checkBuf(kAllToAll, out)); err != nil {
		return nil, err
	}
	n := c.Size()
	switch {
	case in.DType() != out.DType():
		return nil, fmt.Errorf("alltoall: input is %v, output %v", in.DType(), out.DType())
	case in.Len() != out.Len():
		return nil, fmt.Errorf("alltoall: input has %d elements, output %d", in.Len(), out.Len())
	case in.Len()%n != 0:
		return nil, fmt.Errorf("alltoall: %d elements do not split into %d equal blocks", in.Len(), n)
	}
	if c == nil {
		copy(out.bytes(), in.bytes())
		return nil, nil
	}
	plan := func(*Comm, fingerprint) *Plan { return allToAllPlan(n, c.me, in.Len()/n) }
	return c.begin(ctx, fingerprint{Kind: kAllToAll, DType: in.DType(), Count: uint64(in.Len())}, plan, in.bytes(), out.bytes())
}

func (c *Comm) segElems(dt DType) int { return max(1, c.opts.SegmentBytes/dt.Size()) }

// Send delivers buf to group rank peer (matched by that rank's next Recv
// from this rank). Point-to-point messages between two ranks arrive in the
// order sent; concurrent Sends to one peer have no defined order.
func (c *Comm) Send(ctx context.Context, buf Buffer, peer int) error {
	return c.p2p(ctx, buf, peer, true)
}

// Recv receives the next point-to-point message from group rank peer into
// buf, which must have the sender's length and type.
func (c *Comm) Recv(ctx context.Context, buf Buffer, peer int) error {
	return c.p2p(ctx, buf, peer, false)
}

// SendAsync is the asynchronous Send.
func (c *Comm) SendAsync(ctx context.Context, buf Buffer, peer int) *Handle {
	return c.p2pAsync(ctx, buf, peer, true)
}

// RecvAsync is the asynchronous Recv. Several RecvAsync from one peer
// match that peer's messages in issue order only if issued in that order
// from one goroutine.
func (c *Comm) RecvAsync(ctx context.Context, buf Buffer, peer int) *Handle {
	return c.p2pAsync(ctx, buf, peer, false)
}

func (c *Comm) p2pAsync(ctx context.Context, buf Buffer, peer int, send bool) *Handle {
	h := &Handle{done: make(chan struct{})}
	go func() {
		h.err = c.p2p(ctx, buf, peer, send)
		close(h.done)
	}()
	return h
}

func (c *Comm) p2p(ctx context.Context, buf Buffer, peer int, send bool) error {
	op := "recv"
	if send {
		op = "send"
	}
	if buf == nil {
		return fmt.Errorf("%s: nil buffer", op)
	}
	if c == nil {
		return fmt.Errorf("%s: peer %d: a group of one has no other rank", op, peer)
	}
	if peer < 0 || peer >= len(c.ranks) || peer == c.me {
		return fmt.Errorf("%s: peer %d is not another rank of a group of %d (this is %d)", op, peer, len(c.ranks), c.me)
	}
	c.mu.Lock()
	if c.broken != nil {
		err := c.broken
		c.mu.Unlock()
		return fmt.Errorf("%s: communicator unusable after an earlier failure: %w", op, err)
	}
	seqs := c.recvSeq
	if send {
		seqs = c.sendSeq
	}
	seq := seqs[peer]
	seqs[peer]++
	c.mu.Unlock()
	deadline, ok := ctx.Deadline()
	if !ok {
		var cancel context.CancelFunc
		deadline = time.Now().Add(c.opts.Timeout)
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	timeout := time.Until(deadline)
	tag := transport.Tag(c.tags | tagP2P)
	id := c.opts.Flight.startP2P(c, op, c.ranks[peer], seq, buf)
	var err error
	if send {
		err = c.t.Send(ctx, c.ranks[peer], tag, buf.bytes())
	} else {
		err = c.t.Recv(ctx, c.ranks[peer], tag, buf.bytes())
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		// as a collective's timeout reads: how long, and for whom
		err = fmt.Errorf("timed out after %v waiting for rank %d: %w", timeout.Round(time.Millisecond), c.ranks[peer], err)
	}
	if err != nil {
		err = fmt.Errorf("%s seq %d (rank %d with rank %d): %w", op, seq, c.ranks[c.me], c.ranks[peer], err)
	}
	c.opts.Flight.end(id, err)
	return err
}
