package zero

import (
	"context"
	"fmt"
	"sort"
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
	// Paged says the model's flat buffers are already discardable pages
	// (model.NewShardedIn with pages.Alloc, or moved there before the
	// weights were loaded); otherwise New moves them.
	Paged bool
	// Precision is the model's compute precision (set on the model after
	// New): under bf16/fp16 ZeRO-3 gathers the weights only the large
	// products read in that precision (model.LowPrecisionRanges).
	Precision model.Precision
	// FullRecompute says backwards recompute each block's forward first
	// (a block's parts are then asked for together: model.PassGroups).
	FullRecompute bool
}

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

	// Gathering in the compute precision (bf16/fp16, ZeRO-3 without
	// LoRA): per unit, its float32-read ranges cut by owner (small[u][r]:
	// rank r's), the most float32 elements a rank owns there (slot), and
	// the buffer their gather fills (slots[u], slot per rank)
	low    []bool
	small  [][][][2]int
	slot   []int
	slots  [][]float32
	lowNow []bool // per unit: its last gather was in the compute precision
	full   bool   // gather everything in float32 (GatherAll)

	core     *core                // what is gathered and reduced when (core.go)
	gathers  []*collective.Handle // per unit: all-gather in flight
	gathers2 []*collective.Handle // per unit: all-gather of the float32-read parameters in flight (low units)
	rs       []*collective.Handle // per unit: gradient reduce-scatter in flight
	rowsBuf  []float32            // every rank's embedding gradient rows (AddRows)
	largest  int                  // elements of the largest unit

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
	s := &Sharder{opts: opts, m: m, units: m.Units(), shard: shard, replica: replica,
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
	for _, u := range s.units {
		s.largest = max(s.largest, u.Size())
	}
	s.fresh = make([]bool, n)
	s.gathers, s.gathers2 = make([]*collective.Handle, n), make([]*collective.Handle, n)
	s.rs = make([]*collective.Handle, n)
	count := m.Params.Count()
	var err error
	if s.grad, err = pages.Alloc[float32](count); err != nil {
		return nil, err
	}
	old := m.Params.Data
	if !lora && opts.Paged {
		// the model's buffers are discardable pages already: ZeRO-3 adds
		// only the master weights
		if s.gathered {
			if s.master, err = pages.Alloc[float32](count); err != nil {
				return nil, err
			}
		}
	} else if !lora {
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
	copyBytes := model.CopyBytes(opts.Precision)
	var low [][2]int
	if s.gathered && !s.frozen && copyBytes > 0 {
		low = m.LowPrecisionRanges()
	}
	size := GatherBytes(s.units, low, copyBytes, s.frozen)
	gsize := make([]int, n)
	for i, u := range s.units {
		gsize[i] = u.Size()
	}
	s.planLowGathers(low)
	s.core = newCore(size, gsize, model.PassOrder(m.PassGroups(false, false)), model.PassOrder(m.PassGroups(true, opts.FullRecompute)), s.gathered, opts.KeepGathered)
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
	// the owned pieces become the master weights: drawn from the seed
	// (a fresh model) or taken from the values the model holds, unit by
	// unit
	if opts.Init {
		m.Params.InitRanges(opts.Seed, s.gmaster, s.gown)
	}
	for i := range s.units {
		g, o := s.grange[i], s.gown[i]
		if !opts.Init {
			copy(s.gmaster[o[0]:o[1]], old[o[0]:o[1]])
		}
		if err := pages.Discard(s.gdata, g[0], g[1]); err != nil {
			return nil, err
		}
	}
	if !opts.Init && !s.frozen && !opts.Paged {
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

// ShardsParams says the model's own parameters are sharded and gathered
// (ZeRO-3 without LoRA; with LoRA it is the frozen base).
func (s *Sharder) ShardsParams() bool { return s.gathered && !s.frozen }

// SetTrace records gathers and reduce-scatters on r's communication lane.
func (s *Sharder) SetTrace(r *trace.Recorder) { s.tr = r }

// Reset starts a step: every owned gradient piece is rewritten by the
// step's first reduce-scatter of its unit.
func (s *Sharder) Reset() {
	for i := range s.fresh {
		s.fresh[i] = true
	}
	s.err = nil
}

// Need implements model.Residency.
func (s *Sharder) Need(ctx context.Context, u int, backward bool) error {
	st := s.core.need(u, backward)
	if st.finish >= 0 {
		// the unit's gradient buffer is reused: its last reduce-scatter
		// must have finished
		if err := s.finishRS(ctx, st.finish); err != nil {
			return err
		}
	}
	if backward && s.gradPaged {
		un := s.units[u]
		pages.Prepare(s.m.Params.Grad, un.Lo, un.Hi) // backward writes it whole
	}
	if st.drop >= 0 {
		if err := s.release(st.drop); err != nil {
			return err
		}
	}
	for _, v := range st.start {
		s.startGather(ctx, v)
	}
	return s.waitGather(ctx, u)
}

// Done implements model.Residency.
func (s *Sharder) Done(ctx context.Context, u int, backward bool) error {
	st := s.core.done(u, backward)
	if st.finish >= 0 {
		if err := s.finishRS(ctx, st.finish); err != nil {
			return err
		}
	}
	if st.rs {
		s.startRS(ctx, u)
	}
	if st.release {
		return s.release(u)
	}
	return nil
}

// startGather all-gathers unit u's parameters from the owned master
// pieces into the model's buffer: in float32, or for a unit of weights
// read in the compute precision their rounded values into the copy and
// the unit's other parameters in float32 beside.
func (s *Sharder) startGather(ctx context.Context, u int) {
	g, o := s.grange[u], s.gown[u]
	s.lowNow[u] = s.low[u] && !s.full
	if s.lowNow[u] {
		s.startLowGather(ctx, u)
		return
	}
	pages.Prepare(s.gdata, g[0], g[1])
	copy(s.gdata[o[0]:o[1]], s.gmaster[o[0]:o[1]])
	h := s.shard.AllGatherAsync(ctx, collective.F32(s.gdata[g[0]:g[1]]))
	s.gathers[u] = h
	s.traceOp(h, "all-gather "+s.units[u].Name, 4*(g[1]-g[0]))
}

// waitGather waits for unit u's gather, if one is in flight, and rounds
// it into the reduced-precision copy.
func (s *Sharder) waitGather(ctx context.Context, u int) error {
	h := s.gathers[u]
	if h == nil {
		return nil
	}
	s.gathers[u] = nil
	if err := h.Wait(ctx); err != nil {
		return fmt.Errorf("ZeRO-3 all-gather of %s: %w", s.units[u].Name, err)
	}
	if h2 := s.gathers2[u]; h2 != nil {
		s.gathers2[u] = nil
		if err := h2.Wait(ctx); err != nil {
			return fmt.Errorf("ZeRO-3 all-gather of %s's float32 parameters: %w", s.units[u].Name, err)
		}
		s.unpackSmall(u)
	}
	if s.lowNow[u] {
		return nil // the copy arrived rounded
	}
	if !s.frozen {
		s.m.SyncPrecisionRange(s.grange[u][0], s.grange[u][1])
	}
	return nil
}

// release hands unit u's parameter pages back (the core has already
// counted it out), after any gather still writing them.
func (s *Sharder) release(u int) error {
	for _, hs := range [][]*collective.Handle{s.gathers, s.gathers2} {
		if h := hs[u]; h != nil {
			hs[u] = nil
			if err := h.Wait(context.Background()); err != nil && s.err == nil {
				s.err = err
			}
		}
	}
	g := s.grange[u]
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
	for _, u := range s.core.releaseAll() {
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
	s.traceOp(h, "reduce-scatter "+un.Name, 4*un.Size())
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
	un := s.units[u]
	if err := h.Wait(ctx); err != nil {
		return fmt.Errorf("ZeRO gradient reduce-scatter of %s: %w", un.Name, err)
	}
	g := s.m.Params.Grad
	if err := s.addPiece(ctx, u, "gradient"); err != nil {
		return err
	}
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
	for _, u := range s.core.finishAll() {
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
	if p := s.core.dropPrefetch(); p >= 0 {
		if err := s.release(p); err != nil {
			return err
		}
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

// traceOp records h's span (moving n bytes) on the communication lane
// when it completes.
func (s *Sharder) traceOp(h *collective.Handle, name string, n int) {
	if s.tr == nil {
		return
	}
	t0, tr := time.Now(), s.tr
	go func() {
		<-h.Done()
		tr.Add(name, "comm", trace.LaneComm, t0, time.Now(), map[string]any{"bytes": n})
	}()
}

// Use is the sharder's memory, in elements, for the memory report.
type Use struct {
	Owned        int // elements this rank owns (master weights, gradient, each)
	PeakGathered int // ZeRO-3: most bytes of gathered parameters resident at once (GatherBytes)
	PeakGrads    int // most unit gradient elements resident at once
	Prefetched   int // units that were already being gathered when the model asked for them
}

// Use reports the sharder's memory so far.
func (s *Sharder) Use() Use {
	n := 0
	for _, o := range s.own {
		n += o[1] - o[0]
	}
	return Use{Owned: n, PeakGathered: s.core.peak, PeakGrads: s.core.peakG, Prefetched: s.core.hits}
}

// ShardComm is the shard group (the data-parallel group without hybrid
// sharding): the ranks whose owned pieces together make the whole.
func (s *Sharder) ShardComm() *collective.Comm { return s.shard }

// PiecesFrom lists the owned pieces of the reduced gradient of the units
// from offset on, in order: the tied embedding's chunks when offset is
// model.GPT.TiedOffset (wte on the first stage, its copy on the last,
// which both cut alike).
func (s *Sharder) PiecesFrom(offset int) [][]float32 {
	var out [][]float32
	for i, u := range s.units {
		if o := s.own[i]; u.Lo >= offset && o[1] > o[0] {
			out = append(out, s.grad[o[0]:o[1]])
		}
	}
	return out
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
	// readers of the whole model read float32: units gathered in the
	// compute precision are gathered again
	if err := s.ReleaseAll(); err != nil {
		return err
	}
	s.full = true
	defer func() { s.full = false }()
	for _, u := range s.core.gatherAll() {
		s.startGather(ctx, u)
	}
	for u := range s.units {
		if err := s.waitGather(ctx, u); err != nil {
			return err
		}
	}
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
	for _, o := range s.own {
		copy(s.master[o[0]:o[1]], data[o[0]:o[1]])
	}
	s.core.releaseAll()
	return pages.Free(data)
}

// AddRows implements model.RowAdder: the token embedding's gradient
// arrives as rows (ids of local vocabulary rows, rows len(ids) x width)
// instead of a whole table. Every rank's rows are all-gathered over the
// shard group (and then the replica group), and each rank adds the parts
// of them that fall in its owned pieces of units (the wte chunks, in
// order), rank by rank: every owner of a piece sums the same values in
// the same order. A unit not reduced this step (the first of several
// stages, whose wte has no head) starts from zero.
func (s *Sharder) AddRows(ctx context.Context, units []int, ids []int32, rows []float32, width, capacity int) error {
	if len(ids) > capacity || len(rows) != len(ids)*width {
		return fmt.Errorf("ZeRO embedding rows: %d rows of %d values for capacity %d", len(ids), len(rows), capacity)
	}
	for _, u := range s.core.finishAll() {
		if err := s.finishRS(ctx, u); err != nil {
			return err
		}
	}
	// one rank's record: the row count, the ids (exact as float32 below
	// 2^24), then the rows
	per := 1 + capacity + capacity*width
	if per*s.shard.Size()*max(1, s.replica.Size()) > s.largest {
		// every rank's rows would outweigh a unit: reduce them chunk by
		// chunk as dense gradients instead
		return s.addRowsDense(ctx, units, ids, rows, width)
	}
	if n := per * s.shard.Size() * max(1, s.replica.Size()); len(s.rowsBuf) != n {
		s.rowsBuf = make([]float32, n)
	}
	buf := s.rowsBuf
	mine := buf[per*s.shard.Rank() : per*(s.shard.Rank()+1)]
	mine[0] = float32(len(ids))
	for i, v := range ids {
		mine[1+i] = float32(v)
	}
	copy(mine[1+capacity:], rows)
	group := buf[:per*s.shard.Size()]
	if err := s.shard.AllGather(ctx, collective.F32(group)); err != nil {
		return fmt.Errorf("ZeRO embedding rows all-gather: %w", err)
	}
	if r := s.replica.Size(); r > 1 {
		// each shard group's records, side by side
		copy(buf[len(group)*s.replica.Rank():], group)
		if err := s.replica.AllGather(ctx, collective.F32(buf)); err != nil {
			return fmt.Errorf("ZeRO embedding rows all-gather over the replica group: %w", err)
		}
	}
	// where each chunk's rows start
	first := make([]int, len(units)+1)
	for k, u := range units {
		first[k+1] = first[k] + s.units[u].Size()/width
		if s.fresh[u] {
			o := s.own[u]
			clear(s.grad[o[0]:o[1]])
			s.fresh[u] = false
		}
	}
	for rec := 0; rec+per <= len(buf); rec += per {
		r := buf[rec : rec+per]
		n := int(r[0])
		for i := 0; i < n; i++ {
			v := int(r[1+i])
			k := sort.SearchInts(first, v+1) - 1
			if k < 0 || k >= len(units) {
				return fmt.Errorf("ZeRO embedding rows: row %d outside the %d rows of the units", v, first[len(units)])
			}
			u := units[k]
			lo := s.units[u].Lo + (v-first[k])*width
			a, b := max(lo, s.own[u][0]), min(lo+width, s.own[u][1])
			row := r[1+capacity+i*width : 1+capacity+(i+1)*width]
			for j := a; j < b; j++ {
				s.grad[j] += row[j-lo]
			}
		}
	}
	return nil
}

// addRowsDense is AddRows for rows that outweigh a unit (large
// micro-batches): each chunk's gradient is written from this rank's rows
// (zeros elsewhere) and reduce-scattered into the owned piece, one chunk
// at a time. On two ranks the sums are still DDP's: a row's head part
// was reduced without the rows its token holds, and x + 0 is exact.
func (s *Sharder) addRowsDense(ctx context.Context, units []int, ids []int32, rows []float32, width int) error {
	g := s.m.Params.Grad
	i, r0 := 0, 0
	for _, u := range units {
		un := s.units[u]
		r1 := r0 + un.Size()/width
		if s.gradPaged {
			pages.Prepare(g, un.Lo, un.Hi)
		}
		chunk := g[un.Lo:un.Hi]
		clear(chunk)
		for ; i < len(ids) && int(ids[i]) < r1; i++ {
			v := int(ids[i]) - r0
			copy(chunk[v*width:(v+1)*width], rows[i*width:(i+1)*width])
		}
		if err := s.shard.ReduceScatter(ctx, collective.F32(chunk), collective.Sum); err != nil {
			return fmt.Errorf("ZeRO embedding gradient reduce-scatter of %s: %w", un.Name, err)
		}
		if err := s.addPiece(ctx, u, "embedding gradient"); err != nil {
			return err
		}
		if s.gradPaged {
			if err := pages.Discard(g, un.Lo, un.Hi); err != nil {
				return err
			}
		}
		r0 = r1
	}
	return nil
}

// addPiece all-reduces unit u's owned piece of the model's reduce-scattered
// gradient over the replica group (hybrid sharding) and adds it into the
// sharded gradient: the step's first piece of u is copied, later ones
// (micro-batches) added.
func (s *Sharder) addPiece(ctx context.Context, u int, what string) error {
	o := s.own[u]
	piece := s.m.Params.Grad[o[0]:o[1]]
	if s.replica.Size() > 1 && len(piece) > 0 {
		if err := s.replica.AllReduce(ctx, collective.F32(piece), collective.Sum); err != nil {
			return fmt.Errorf("ZeRO %s all-reduce of %s over the replica group: %w", what, s.units[u].Name, err)
		}
	}
	dst := s.grad[o[0]:o[1]]
	if s.fresh[u] {
		copy(dst, piece)
		s.fresh[u] = false
		return nil
	}
	for i, v := range piece {
		dst[i] += v
	}
	return nil
}
