package zero

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/internal/pages"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/trace"
)

// Options configure a Sharder.
type Options struct {
	// Stage is 2 (gradients sharded) or 3 (parameters too).
	Stage int
	// KeepGathered keeps a unit's gathered parameters from its forward
	// until its backward (ZeRO-3; --reshard-after-forward=false): ZeRO-2's
	// communication, more memory.
	KeepGathered bool
	// Seed, with Init set, fills the parameters unit by unit (a fresh
	// model); otherwise the model's current values are sharded.
	Seed uint64
	Init bool
}

// unit state under ZeRO-3
const (
	absent    = iota // pages handed back
	gathering        // all-gather in flight
	resident         // gathered
)

// Sharder is a model.Residency: it owns this rank's shards of a model's
// gradients (and, with ZeRO-3, parameters) and moves units in and out.
// The model calls it from one goroutine; its methods are not meant to be
// called concurrently.
type Sharder struct {
	opts    Options
	m       *model.GPT
	units   []model.Unit
	shard   *collective.Comm // the shard group: gathers and reduce-scatters
	replica *collective.Comm // the ranks holding the same pieces in other shard groups; nil when none
	own     [][2]int         // per unit: the owned range [lo, hi) of the trainable flat buffers

	// What ZeRO-3 gathers: the trainable parameters (gdata = the model's
	// Params.Data, gmaster = the float32 master weights), or with LoRA the
	// frozen base weights (gdata = LoRA.Base.Data, gmaster = their owned
	// pieces); the adapters then stay resident as under ZeRO-2.
	gathered  bool      // ZeRO-3: units are gathered and handed back
	frozen    bool      // what is gathered is LoRA's frozen base
	grange    [][2]int  // per unit: the gathered range of gdata
	gown      [][2]int  // per unit: its owned piece
	gdata     []float32 // the buffer units are gathered into
	gmaster   []float32 // the owned pieces, resident only there
	gradPaged bool      // the model's Params.Grad is in discardable pages

	master []float32 // ZeRO-3 without LoRA: the master weights (= gmaster)
	grad   []float32 // the reduced gradient, resident only in owned ranges
	fresh  []bool    // per unit: grad's owned piece not yet written this step

	state   []int                // per unit (ZeRO-3)
	inUse   []int                // per unit: Needs without their Done
	kept    []bool               // per unit: gathered in forward and kept for backward
	pinned  bool                 // GatherAll: every unit stays gathered until ReleaseAll
	gathers []*collective.Handle // per unit: all-gather in flight
	rs      []*collective.Handle // per unit: gradient reduce-scatter in flight
	rsUnit  int                  // the unit whose reduce-scatter is in flight, or -1
	shared  int                  // the unit whose gradient two parts of a backward write (model.SharedUnit), or -1
	half    bool                 // the shared unit's first part is done, its gradient held
	pref    int                  // a prefetched unit not yet needed, or -1

	hits             int // Needs that found their unit prefetched
	live, peakLive   int // ZeRO-3: gathered parameter elements now and at most
	liveG, peakLiveG int // unit gradient elements in use now and at most

	mu  sync.Mutex
	tr  *trace.Recorder
	err error // first asynchronous failure
}

// New shards m's training state over shard (and replica, which may be
// nil) and installs the sharder as m's residency. Call it after the model
// is built and laid out, before it runs; with opts.Init it also fills the
// parameters from opts.Seed without ever holding all of them.
func New(m *model.GPT, shard, replica *collective.Comm, opts Options) (*Sharder, error) {
	if opts.Stage != 2 && opts.Stage != 3 {
		return nil, fmt.Errorf("zero: stage %d is not 2 or 3", opts.Stage)
	}
	lora := m.LoRA != nil
	if lora && opts.Init {
		return nil, fmt.Errorf("zero: a LoRA model's base comes from a checkpoint, not from a seed")
	}
	s := &Sharder{opts: opts, m: m, units: m.Units(), shard: shard, replica: replica, rsUnit: -1, pref: -1,
		gathered: opts.Stage == 3, frozen: opts.Stage == 3 && lora, gradPaged: !lora}
	n := len(s.units)
	chunk := func(lo, hi int) [2]int {
		a, b := collective.Chunk(hi-lo, shard.Size(), shard.Rank())
		return [2]int{lo + a, lo + b}
	}
	s.own, s.grange, s.gown = make([][2]int, n), make([][2]int, n), make([][2]int, n)
	for i, u := range s.units {
		s.own[i] = chunk(u.Lo, u.Hi)
		s.grange[i] = [2]int{u.Lo, u.Hi}
		if s.frozen {
			s.grange[i] = [2]int{u.FrozenLo, u.FrozenHi}
		}
		s.gown[i] = chunk(s.grange[i][0], s.grange[i][1])
	}
	s.fresh = make([]bool, n)
	s.state = make([]int, n)
	s.inUse = make([]int, n)
	s.kept = make([]bool, n)
	s.gathers = make([]*collective.Handle, n)
	s.rs = make([]*collective.Handle, n)
	count := m.Params.Count()
	var err error
	if s.grad, err = pages.Alloc[float32](count); err != nil {
		return nil, err
	}
	old := m.Params.Data
	if !lora {
		// the model's buffers move into discardable pages (with LoRA the
		// caller paged the base before enabling it: SetParamBuffers)
		data := old
		if s.gathered {
			if data, err = pages.Alloc[float32](count); err != nil {
				return nil, err
			}
			if s.master, err = pages.Alloc[float32](count); err != nil {
				return nil, err
			}
		}
		grad, err := pages.Alloc[float32](count)
		if err != nil {
			return nil, err
		}
		if err := m.SetParamBuffers(data, grad); err != nil {
			return nil, err
		}
	}
	if err := m.SetResidency(s); err != nil {
		return nil, err
	}
	s.shared = m.SharedUnit()
	if !s.gathered {
		if opts.Init {
			m.Init(opts.Seed)
		}
		return s, nil
	}
	if s.frozen {
		s.gdata = m.LoRA.Base.Data
		if s.gmaster, err = pages.Alloc[float32](len(s.gdata)); err != nil {
			return nil, err
		}
		old = s.gdata
	} else {
		// the reduced-precision copy is rounded unit by unit as units are
		// gathered (with LoRA it covers only the resident adapters)
		if err := m.PageLowPrecision(); err != nil {
			return nil, err
		}
		s.gdata, s.gmaster = m.Params.Data, s.master
	}
	// the owned pieces become the master weights, unit by unit
	for i := range s.units {
		g, o := s.grange[i], s.gown[i]
		src := old
		if opts.Init {
			m.Params.InitRange(opts.Seed, g[0], g[1])
			src = s.gdata
		}
		copy(s.gmaster[o[0]:o[1]], src[o[0]:o[1]])
		if err := pages.Discard(s.gdata, g[0], g[1]); err != nil {
			return nil, err
		}
	}
	if !opts.Init && !s.frozen {
		// the values came from the model's old buffer: hand its pages
		// back too (nothing reads it again)
		return s, pages.Free(old)
	}
	return s, nil
}

// Owned lists the ranges [lo, hi) of the flat buffers this rank owns, in
// order (the optimizer's segments are restricted to them).
func (s *Sharder) Owned() [][2]int {
	out := make([][2]int, 0, len(s.own))
	for _, o := range s.own {
		if o[1] > o[0] {
			out = append(out, o)
		}
	}
	return out
}

// Params is the buffer the optimizer updates: the master weights under
// ZeRO-3, the model's parameters under ZeRO-2 (owned ranges only).
func (s *Sharder) Params() []float32 {
	if s.gathered && !s.frozen {
		return s.master
	}
	return s.m.Params.Data
}

// Grad is the reduced gradient, valid in the owned ranges after Finish.
func (s *Sharder) Grad() []float32 { return s.grad }

// Stage is 2 or 3.
func (s *Sharder) Stage() int { return s.opts.Stage }

// SetTrace records gathers and reduce-scatters on r's communication lane.
func (s *Sharder) SetTrace(r *trace.Recorder) { s.tr = r }

// Reset starts a step: every owned gradient piece is rewritten by the
// step's first reduce-scatter of its unit.
func (s *Sharder) Reset() {
	for i := range s.fresh {
		s.fresh[i] = true
	}
	s.half = false
	s.err = nil
}

// Need implements model.Residency.
func (s *Sharder) Need(ctx context.Context, u int, backward bool) error {
	if backward {
		// the unit's gradient buffer is reused: its last reduce-scatter
		// must have finished
		if err := s.finishRS(ctx, u); err != nil {
			return err
		}
		if !(u == s.shared && s.half) {
			s.addLiveG(s.units[u].Size())
		}
	}
	if !s.gathered {
		return nil
	}
	if s.pref == u {
		s.pref = -1
		s.hits++
	}
	if s.state[u] == absent {
		s.startGather(ctx, u)
	}
	if err := s.waitGather(ctx, u); err != nil {
		return err
	}
	s.inUse[u]++
	// prefetch the unit the model asks for next: forward runs the units
	// from the embeddings (last in layout order) to the head (first),
	// backward the other way
	next := u - 1
	if backward {
		next = u + 1
	}
	if next >= 0 && next < len(s.units) && s.state[next] == absent {
		s.dropPrefetch()
		s.startGather(ctx, next)
		s.pref = next
	}
	return nil
}

// Done implements model.Residency.
func (s *Sharder) Done(ctx context.Context, u int, backward bool) error {
	if backward {
		// one reduce-scatter in flight at a time: finish the previous
		// unit's before starting this one's, so at most two units'
		// gradients are resident
		if u == s.shared && !s.half {
			// the first of two contributions: hold the gradient
			s.half = true
		} else {
			if u == s.shared {
				s.half = false
			}
			if s.rsUnit >= 0 && s.rsUnit != u {
				if err := s.finishRS(ctx, s.rsUnit); err != nil {
					return err
				}
			}
			s.startRS(ctx, u)
		}
	}
	if !s.gathered {
		return nil
	}
	s.inUse[u]--
	if s.inUse[u] > 0 || s.pinned {
		return nil
	}
	if !backward && s.opts.KeepGathered {
		s.kept[u] = true
		return nil
	}
	return s.release(u)
}

// startGather all-gathers unit u's parameters from the owned master
// pieces into the model's buffer.
func (s *Sharder) startGather(ctx context.Context, u int) {
	g, o := s.grange[u], s.gown[u]
	copy(s.gdata[o[0]:o[1]], s.gmaster[o[0]:o[1]])
	s.state[u] = gathering
	s.live += g[1] - g[0]
	s.peakLive = max(s.peakLive, s.live)
	h := s.shard.AllGatherAsync(ctx, collective.F32(s.gdata[g[0]:g[1]]))
	s.gathers[u] = h
	s.traceOp(h, "all-gather "+s.units[u].Name, g[1]-g[0])
}

// waitGather waits for unit u's gather and rounds it into the
// reduced-precision copy.
func (s *Sharder) waitGather(ctx context.Context, u int) error {
	if s.state[u] != gathering {
		return nil
	}
	h := s.gathers[u]
	s.gathers[u] = nil
	if err := h.Wait(ctx); err != nil {
		return fmt.Errorf("ZeRO-3 all-gather of %s: %w", s.units[u].Name, err)
	}
	s.state[u] = resident
	if !s.frozen {
		s.m.SyncPrecisionRange(s.grange[u][0], s.grange[u][1])
	}
	return nil
}

// dropPrefetch hands back a prefetched unit that was never needed.
func (s *Sharder) dropPrefetch() {
	p := s.pref
	s.pref = -1
	if p < 0 || s.inUse[p] > 0 || s.kept[p] {
		return
	}
	// a gather in flight is waited for by release
	_ = s.release(p)
}

// release hands unit u's parameter pages back.
func (s *Sharder) release(u int) error {
	if s.state[u] == absent {
		return nil
	}
	if s.state[u] == gathering {
		// never hand back pages an all-gather is writing
		if err := s.gathers[u].Wait(context.Background()); err != nil && s.err == nil {
			s.err = err
		}
		s.gathers[u] = nil
	}
	g := s.grange[u]
	s.state[u] = absent
	s.kept[u] = false
	s.live -= g[1] - g[0]
	if err := pages.Discard(s.gdata, g[0], g[1]); err != nil {
		return err
	}
	if s.frozen {
		return nil
	}
	return s.m.DiscardPrecisionRange(g[0], g[1])
}

// ReleaseAll hands back every gathered unit (after the optimizer changed
// the master weights, and before a checkpoint or evaluation that should
// start from a clean slate).
func (s *Sharder) ReleaseAll() error {
	if !s.gathered {
		return nil
	}
	s.pref, s.pinned = -1, false
	for u := range s.units {
		s.inUse[u] = 0
		if err := s.release(u); err != nil {
			return err
		}
	}
	return nil
}

// startRS reduce-scatters unit u's gradient over the shard group.
func (s *Sharder) startRS(ctx context.Context, u int) {
	un := s.units[u]
	h := s.shard.ReduceScatterAsync(ctx, collective.F32(s.m.Params.Grad[un.Lo:un.Hi]), collective.Sum)
	s.rs[u] = h
	s.rsUnit = u
	s.traceOp(h, "reduce-scatter "+un.Name, un.Size())
}

// finishRS waits for unit u's reduce-scatter (if one is in flight), adds
// its owned piece (all-reduced over the replica group) into the sharded
// gradient, and hands the unit's gradient pages back.
func (s *Sharder) finishRS(ctx context.Context, u int) error {
	h := s.rs[u]
	if h == nil {
		return nil
	}
	s.rs[u] = nil
	if s.rsUnit == u {
		s.rsUnit = -1
	}
	un, o := s.units[u], s.own[u]
	if err := h.Wait(ctx); err != nil {
		return fmt.Errorf("ZeRO gradient reduce-scatter of %s: %w", un.Name, err)
	}
	g := s.m.Params.Grad
	piece := g[o[0]:o[1]]
	if s.replica.Size() > 1 && len(piece) > 0 {
		if err := s.replica.AllReduce(ctx, collective.F32(piece), collective.Sum); err != nil {
			return fmt.Errorf("ZeRO gradient all-reduce of %s over the replica group: %w", un.Name, err)
		}
	}
	dst := s.grad[o[0]:o[1]]
	if s.fresh[u] {
		copy(dst, piece)
		s.fresh[u] = false
	} else {
		for i, v := range piece {
			dst[i] += v
		}
	}
	s.liveG -= un.Size()
	s.m.Params.MarkStaleRange(un.Lo, un.Hi)
	if !s.gradPaged {
		return nil
	}
	return pages.Discard(g, un.Lo, un.Hi)
}

// Finish waits for every gradient reduce-scatter of the step. Owned
// pieces of units the step never reached stay as Reset left them: fresh
// pieces are cleared.
func (s *Sharder) Finish(ctx context.Context) error {
	for u := range s.units {
		if err := s.finishRS(ctx, u); err != nil {
			return err
		}
	}
	for u, f := range s.fresh {
		if f {
			o := s.own[u]
			clear(s.grad[o[0]:o[1]])
			s.fresh[u] = false
		}
	}
	if s.gathered {
		s.dropPrefetch()
	}
	return s.err
}

// GatherParams all-gathers every unit's parameters after a ZeRO-2 update
// (the owned pieces changed on their owners). A no-op under ZeRO-3, whose
// forward gathers from the master weights.
func (s *Sharder) GatherParams(ctx context.Context) error {
	if s.gathered && !s.frozen {
		return s.ReleaseAll()
	}
	if err := s.ReleaseAll(); err != nil { // LoRA's base under ZeRO-3
		return err
	}
	data := s.m.Params.Data
	hs := make([]*collective.Handle, len(s.units))
	for i, u := range s.units {
		hs[i] = s.shard.AllGatherAsync(ctx, collective.F32(data[u.Lo:u.Hi]))
	}
	for i, h := range hs {
		if err := h.Wait(ctx); err != nil {
			return fmt.Errorf("ZeRO-2 parameter all-gather of %s: %w", s.units[i].Name, err)
		}
	}
	return nil
}

func (s *Sharder) addLiveG(n int) {
	s.liveG += n
	s.peakLiveG = max(s.peakLiveG, s.liveG)
}

// traceOp records h's span on the communication lane when it completes.
func (s *Sharder) traceOp(h *collective.Handle, name string, n int) {
	if s.tr == nil {
		return
	}
	t0, tr := time.Now(), s.tr
	go func() {
		<-h.Done()
		tr.Add(name, "comm", trace.LaneComm, t0, time.Now(), map[string]any{"bytes": 4 * n})
	}()
}

// Use is the sharder's memory, in elements, for the memory report.
type Use struct {
	Owned        int // elements this rank owns (master weights, gradient, each)
	PeakGathered int // ZeRO-3: most parameter elements gathered at once
	PeakGrads    int // most unit gradient elements resident at once
	Prefetched   int // units that were already being gathered when the model asked for them
}

// Use reports the sharder's memory so far.
func (s *Sharder) Use() Use {
	n := 0
	for _, o := range s.own {
		n += o[1] - o[0]
	}
	return Use{Owned: n, PeakGathered: s.peakLive, PeakGrads: s.peakLiveG, Prefetched: s.hits}
}

// ShardComm is the shard group (the data-parallel group without hybrid
// sharding): the ranks whose owned pieces together make the whole.
func (s *Sharder) ShardComm() *collective.Comm { return s.shard }

// TiedPiece is the owned piece of the reduced gradient of the unit that
// starts at offset (the tied embedding: wte on the first stage, its copy
// on the last); empty when no unit starts there.
func (s *Sharder) TiedPiece(offset int) []float32 {
	for i, u := range s.units {
		if u.Lo == offset {
			o := s.own[i]
			return s.grad[o[0]:o[1]]
		}
	}
	return nil
}

// GatherAll gathers every unit and keeps it (until ReleaseAll, which the
// next step's update calls), so the model's Params.Data holds every
// parameter and the model runs without communicating: for readers of the
// whole model (tests, exports, generation on one rank). Every rank of the
// shard group calls it.
func (s *Sharder) GatherAll(ctx context.Context) error {
	if !s.gathered {
		return nil
	}
	s.dropPrefetch()
	for u := range s.units {
		if s.state[u] == absent {
			s.startGather(ctx, u)
		}
	}
	for u := range s.units {
		if err := s.waitGather(ctx, u); err != nil {
			return err
		}
	}
	s.pinned = true
	return nil
}

// Adopt takes the model's current parameters as the sharded state after
// something wrote all of Params.Data (a checkpoint load into another
// layout): ZeRO-3 copies the owned pieces into the master weights and
// hands every page back; ZeRO-2 keeps them where they are.
func (s *Sharder) Adopt() error {
	if !s.gathered || s.frozen {
		return nil // a LoRA checkpoint holds only the adapters, which stay resident
	}
	data := s.m.Params.Data
	for i, o := range s.own {
		copy(s.master[o[0]:o[1]], data[o[0]:o[1]])
		s.state[i], s.inUse[i], s.kept[i] = absent, 0, false
	}
	s.live, s.pref = 0, -1
	return pages.Free(data)
}
