package pipeline

import (
	"fmt"
	"strings"
)

// Kind is what an action does.
type Kind int

// The actions a stage can take. The first six are the ones GPipe and 1F1B
// use; BackwardInput and BackwardWeight split Backward for the zero-bubble
// schedules (doc.go gives the executor's contract for each kind).
const (
	Forward        Kind = iota // run the chunk forward on a micro-batch
	Backward                   // run the chunk backward on a micro-batch: input and weight gradients
	SendAct                    // send the forward output to the next chunk's stage
	RecvAct                    // receive the forward input from the previous chunk's stage
	SendGrad                   // send the input gradient to the previous chunk's stage
	RecvGrad                   // receive the output gradient from the next chunk's stage
	BackwardInput              // the input-gradient half of Backward (zero-bubble "B")
	BackwardWeight             // the weight-gradient half of Backward (zero-bubble "W")
)

var kindNames = [...]string{"F", "B", "sendA", "recvA", "sendG", "recvG", "Bi", "W"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// compute reports whether k is a compute action (as opposed to a transfer).
func (k Kind) compute() bool {
	return k == Forward || k == Backward || k == BackwardInput || k == BackwardWeight
}

// Action is one step of a stage's program.
type Action struct {
	Kind  Kind
	Micro int // micro-batch index
	// Chunk is the model chunk on this stage, 0..Virtual-1: with V virtual
	// stages the model's layers are cut into Stages*V chunks and stage r
	// holds global chunks r, r+Stages, ..., so local chunk c is global chunk
	// c*Stages + r (see Chunks). Always 0 without virtual stages.
	Chunk int
}

// String is the kind and micro-batch ("F3"), with the chunk when it is not
// 0 ("F3c1").
func (a Action) String() string {
	if a.Chunk != 0 {
		return fmt.Sprintf("%s%dc%d", a.Kind, a.Micro, a.Chunk)
	}
	return fmt.Sprintf("%s%d", a.Kind, a.Micro)
}

// Schedule is every stage's program for one optimizer step.
type Schedule struct {
	Name    string
	Stages  int
	Micro   int
	Virtual int        // model chunks per stage; 0 means 1
	Steps   [][]Action // Steps[stage] in execution order
}

// Label is the schedule's name with its virtual stages when it has
// several ("interleaved V=2").
func (s *Schedule) Label() string {
	if s.Chunks() > 1 {
		return fmt.Sprintf("%s V=%d", s.Name, s.Chunks())
	}
	return s.Name
}

// Chunks is the number of model chunks per stage (Virtual, at least 1).
func (s *Schedule) Chunks() int { return max(s.Virtual, 1) }

// Global is the global chunk index of stage's local chunk: chunk*Stages +
// stage. The model's layers run in global chunk order.
func (s *Schedule) Global(stage, chunk int) int { return chunk*s.Stages + stage }

// Names of the generators.
const (
	GPipe       = "gpipe"
	OneFOneB    = "1f1b"
	Interleaved = "interleaved" // Megatron-LM's interleaved 1F1B over virtual stages
	ZBH1        = "zb-h1"       // zero bubble, 1F1B's peak memory (Qi et al., 2023)
	ZBH2        = "zb-h2"       // zero bubble, about twice 1F1B's activation memory
)

// Names lists every generator, in the order the tools show them.
var Names = []string{GPipe, OneFOneB, Interleaved, ZBH1, ZBH2}

// Spec names a schedule to generate.
type Spec struct {
	Name    string
	Stages  int // pipeline stages (ranks along the pipeline axis), p
	Micro   int // micro-batches per optimizer step, m
	Virtual int // model chunks per stage, V (interleaved only); 0 means 1
}

// Needs is a set of executor capabilities beyond forward and backward of
// one model chunk per stage.
type Needs uint

// The capabilities a schedule may need.
const (
	NeedsSplitBackward Needs = 1 << iota // BackwardInput and BackwardWeight actions
	NeedsVirtualStages                   // more than one model chunk per stage (Action.Chunk > 0)
)

func (n Needs) String() string {
	var parts []string
	if n&NeedsSplitBackward != 0 {
		parts = append(parts, "a backward split into input gradient and weight gradient (BackwardInput, BackwardWeight)")
	}
	if n&NeedsVirtualStages != 0 {
		parts = append(parts, "several model chunks per stage (virtual stages)")
	}
	if len(parts) == 0 {
		return "nothing beyond forward and backward"
	}
	return strings.Join(parts, " and ")
}

// Needs reports what an executor must support to run s.
func (s *Schedule) Needs() Needs {
	var n Needs
	for _, acts := range s.Steps {
		for _, a := range acts {
			if a.Kind == BackwardInput || a.Kind == BackwardWeight {
				n |= NeedsSplitBackward
			}
			if a.Chunk != 0 {
				n |= NeedsVirtualStages
			}
		}
	}
	return n
}

// New generates a schedule by name for stages x micro-batches with one
// model chunk per stage, for executors that run Forward and Backward only
// (the trainer's forward passes run its GPipe): a schedule that
// needs more (zb-h1, zb-h2) is refused with a message naming what it
// needs; interleaved has one chunk per stage here, so it is 1F1B's
// program. Generate builds any schedule (the trainer runs them all).
func New(name string, stages, micro int) (*Schedule, error) {
	s, err := Generate(Spec{Name: name, Stages: stages, Micro: micro})
	if err != nil {
		return nil, err
	}
	if n := s.Needs(); n != 0 {
		return nil, fmt.Errorf("pipeline: schedule %s needs %s, which this executor does not run (have %s, %s)", s.Name, n, GPipe, OneFOneB)
	}
	return s, nil
}

// Generate builds the schedule spec names and proves it with Check.
func Generate(spec Spec) (*Schedule, error) {
	p, m, v := spec.Stages, spec.Micro, max(spec.Virtual, 1)
	if p <= 0 {
		return nil, fmt.Errorf("pipeline: %d stages", p)
	}
	if m <= 0 {
		return nil, fmt.Errorf("pipeline: %d micro-batches", m)
	}
	if spec.Virtual < 0 {
		return nil, fmt.Errorf("pipeline: %d virtual stages", spec.Virtual)
	}
	name := strings.ToLower(spec.Name)
	if v > 1 && name != Interleaved {
		return nil, fmt.Errorf("pipeline: schedule %s runs one model chunk per stage; %d virtual stages need --schedule %s", name, v, Interleaved)
	}
	var s *Schedule
	switch name {
	case GPipe:
		s = gpipe(p, m)
	case OneFOneB:
		s = oneFOneB(p, m)
	case Interleaved:
		if v > 1 && p == 1 {
			return nil, fmt.Errorf("pipeline: %s with %d virtual stages needs at least 2 stages (one stage has no bubble to shrink)", Interleaved, v)
		}
		if v > 1 && m%p != 0 {
			return nil, fmt.Errorf("pipeline: %s needs the micro-batches (%d) to be a multiple of the stages (%d): Megatron's interleaved 1F1B runs them in groups of one per stage", Interleaved, m, p)
		}
		s = interleaved(p, m, v)
	case ZBH1:
		s = zbH1(p, m)
	case ZBH2:
		s = zbH2(p, m)
	default:
		return nil, fmt.Errorf("pipeline: unknown schedule %q (have %s)", spec.Name, strings.Join(Names, ", "))
	}
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("pipeline: generated %s schedule is invalid: %w", name, err)
	}
	return s, nil
}

// forward and backward append one micro-batch's actions with its transfers.
func forward(acts []Action, stage, stages, m int) []Action {
	if stage > 0 {
		acts = append(acts, Action{Kind: RecvAct, Micro: m})
	}
	acts = append(acts, Action{Kind: Forward, Micro: m})
	if stage < stages-1 {
		acts = append(acts, Action{Kind: SendAct, Micro: m})
	}
	return acts
}

func backward(acts []Action, stage, stages, m int) []Action {
	if stage < stages-1 {
		acts = append(acts, Action{Kind: RecvGrad, Micro: m})
	}
	acts = append(acts, Action{Kind: Backward, Micro: m})
	if stage > 0 {
		acts = append(acts, Action{Kind: SendGrad, Micro: m})
	}
	return acts
}

// gpipe: every micro-batch forward, then every micro-batch backward.
func gpipe(stages, micro int) *Schedule {
	s := &Schedule{Name: GPipe, Stages: stages, Micro: micro, Virtual: 1, Steps: make([][]Action, stages)}
	for st := 0; st < stages; st++ {
		var acts []Action
		for m := 0; m < micro; m++ {
			acts = forward(acts, st, stages, m)
		}
		for m := 0; m < micro; m++ {
			acts = backward(acts, st, stages, m)
		}
		s.Steps[st] = acts
	}
	return s
}

// oneFOneB is PipeDream-Flush: stage s warms up with min(P-s-1, M) forwards,
// then alternates one forward and one backward, then drains the backwards.
// At most min(P-s, M) micro-batches are in flight on stage s, against M for
// GPipe.
func oneFOneB(stages, micro int) *Schedule {
	s := &Schedule{Name: OneFOneB, Stages: stages, Micro: micro, Virtual: 1, Steps: make([][]Action, stages)}
	for st := 0; st < stages; st++ {
		warm := min(stages-st-1, micro)
		var acts []Action
		f, b := 0, 0
		for ; f < warm; f++ {
			acts = forward(acts, st, stages, f)
		}
		for ; f < micro; f++ {
			acts = forward(acts, st, stages, f)
			acts = backward(acts, st, stages, b)
			b++
		}
		for ; b < micro; b++ {
			acts = backward(acts, st, stages, b)
		}
		s.Steps[st] = acts
	}
	return s
}

// InFlight is the largest number of (micro-batch, chunk) pairs whose
// activations stage holds at once: forwarded, and not yet through Backward
// or BackwardWeight (a weight gradient still reads the activations). It is
// the number of activation buffers the executor needs; with V chunks each
// buffer holds one chunk's activations, 1/V of a stage's.
func (s *Schedule) InFlight(stage int) int {
	cur, peak := 0, 0
	for _, a := range s.Steps[stage] {
		switch a.Kind {
		case Forward:
			cur++
			peak = max(peak, cur)
		case Backward, BackwardWeight:
			cur--
		}
	}
	return peak
}

// AwaitingInputGrad is the largest number of (micro-batch, chunk) pairs on
// stage that are forwarded but not yet through Backward or BackwardInput:
// the full activations the input gradient needs. After BackwardInput only
// what the weight gradient reads stays (zero-bubble's "M_W < M_B").
func (s *Schedule) AwaitingInputGrad(stage int) int {
	cur, peak := 0, 0
	for _, a := range s.Steps[stage] {
		switch a.Kind {
		case Forward:
			cur++
			peak = max(peak, cur)
		case Backward, BackwardInput:
			cur--
		}
	}
	return peak
}

// Slots assigns each (micro-batch, chunk) of stage an activation buffer in
// 0..InFlight(stage)-1: the lowest free buffer at its Forward, freed after
// its Backward or BackwardWeight. The executor may index its buffers with it
// (GPipe and 1F1B give micro % InFlight).
func (s *Schedule) Slots(stage int) map[[2]int]int {
	slot := map[[2]int]int{}
	var free []bool // free[i]: buffer i is unused
	for _, a := range s.Steps[stage] {
		k := [2]int{a.Micro, a.Chunk}
		switch a.Kind {
		case Forward:
			i := 0
			for i < len(free) && !free[i] {
				i++
			}
			if i == len(free) {
				free = append(free, false)
			}
			free[i] = false
			slot[k] = i
		case Backward, BackwardWeight:
			free[slot[k]] = true
		}
	}
	return slot
}

// WeightGradDone is, for each chunk of stage, the index in Steps[stage] of
// the action after which that chunk's weight gradients are final (its last
// Backward or BackwardWeight): the point where the executor may start the
// chunk's data-parallel gradient reduction.
func (s *Schedule) WeightGradDone(stage int) []int {
	done := make([]int, s.Chunks())
	for i := range done {
		done[i] = -1
	}
	for i, a := range s.Steps[stage] {
		if a.Kind == Backward || a.Kind == BackwardWeight {
			done[a.Chunk] = i
		}
	}
	return done
}

// TheoreticalBubble is the schedule's idle fraction of a step by its
// published formula, with a stage's forward, input-gradient and
// weight-gradient times equal (T_F = T_B = T_W; Backward = 2 T_F) and free
// transfers: GPipe and 1F1B (p-1)/(m+p-1), interleaved with V chunks
// (p-1)/(V m+p-1) (Narayanan et al., 2021), ZB-H1 (p-1)/(3m+p-1) (Qi et
// al., 2023: a bubble of (p-1)(T_F+T_B-T_W)); ZB-H2's published zero holds
// only when stages may start the next step at different times, so with
// the step's synchronous end its bound is (p-1) T_F as well. Simulate gives
// the figure for other costs.
func (s *Schedule) TheoreticalBubble() float64 {
	p, m := float64(s.Stages), float64(s.Micro)
	switch s.Name {
	case Interleaved:
		return (p - 1) / (float64(s.Chunks())*m + p - 1)
	case ZBH1, ZBH2:
		return (p - 1) / (3*m + p - 1)
	}
	return (p - 1) / (m + p - 1)
}

// Table renders the programs as text, one row per stage.
func (s *Schedule) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule %s: %d stages, %d micro-batches", s.Name, s.Stages, s.Micro)
	if s.Chunks() > 1 {
		fmt.Fprintf(&b, ", %d chunks per stage", s.Chunks())
	}
	fmt.Fprintf(&b, ", theoretical bubble %.1f%%\n", 100*s.TheoreticalBubble())
	for st, acts := range s.Steps {
		fmt.Fprintf(&b, "stage %d (max %d in flight):", st, s.InFlight(st))
		for _, a := range acts {
			if s.Chunks() > 1 {
				fmt.Fprintf(&b, " %s%dc%d", a.Kind, a.Micro, a.Chunk)
			} else {
				fmt.Fprintf(&b, " %s", a)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ChunkSlots assigns each (micro-batch, chunk) of stage an activation
// buffer among its chunk's own: slot[{micro, chunk}] is in
// 0..count[chunk]-1, the lowest buffer of that chunk free at its Forward,
// freed after its Backward or BackwardWeight. With several chunks per
// stage the chunks' activations differ in shape (their blocks; the head
// on the last chunk of the last stage), so each chunk has its buffers.
func (s *Schedule) ChunkSlots(stage int) (slot map[[2]int]int, count []int) {
	slot = map[[2]int]int{}
	free := make([][]bool, s.Chunks()) // free[c][i]: chunk c's buffer i is unused
	for _, a := range s.Steps[stage] {
		k, f := [2]int{a.Micro, a.Chunk}, free[a.Chunk]
		switch a.Kind {
		case Forward:
			i := 0
			for i < len(f) && !f[i] {
				i++
			}
			if i == len(f) {
				f = append(f, false)
			}
			f[i] = false
			slot[k] = i
		case Backward, BackwardWeight:
			f[slot[k]] = true
		}
		free[a.Chunk] = f
	}
	count = make([]int, len(free))
	for c := range free {
		count[c] = len(free[c])
	}
	return slot, count
}

// Pending is the largest number of receives of kind (RecvAct or RecvGrad)
// on stage whose data the executor holds at once: received, and not yet
// consumed by the compute that takes it (the Forward of the same
// micro-batch and chunk for RecvAct, its Backward or BackwardInput for
// RecvGrad). Receive buffers taken at the receive and given back at that
// compute need no more.
func (s *Schedule) Pending(stage int, kind Kind) int {
	consumes := func(a Action) bool {
		if kind == RecvAct {
			return a.Kind == Forward
		}
		return a.Kind == Backward || a.Kind == BackwardInput
	}
	held := map[[2]int]bool{}
	peak := 0
	for _, a := range s.Steps[stage] {
		k := [2]int{a.Micro, a.Chunk}
		switch {
		case a.Kind == kind:
			held[k] = true
			peak = max(peak, len(held))
		case consumes(a):
			delete(held, k)
		}
	}
	return peak
}
