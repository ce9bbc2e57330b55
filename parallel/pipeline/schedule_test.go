package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"math"
	"strings"
	"testing"
)

func progText(acts []Action) string {
	var got []string
	for _, a := range acts {
		got = append(got, a.String())
	}
	return strings.Join(got, " ")
}

// legacy is the GPipe / 1F1B generator as the trainer first shipped it
// (commit 6401409), frozen here: the programs must not change.
func legacy(name string, stages, micro int) [][]string {
	out := make([][]string, stages)
	for st := 0; st < stages; st++ {
		var acts []string
		fwd := func(m int) {
			if st > 0 {
				acts = append(acts, fmt.Sprintf("recvA%d", m))
			}
			acts = append(acts, fmt.Sprintf("F%d", m))
			if st < stages-1 {
				acts = append(acts, fmt.Sprintf("sendA%d", m))
			}
		}
		bwd := func(m int) {
			if st < stages-1 {
				acts = append(acts, fmt.Sprintf("recvG%d", m))
			}
			acts = append(acts, fmt.Sprintf("B%d", m))
			if st > 0 {
				acts = append(acts, fmt.Sprintf("sendG%d", m))
			}
		}
		if name == GPipe {
			for m := 0; m < micro; m++ {
				fwd(m)
			}
			for m := 0; m < micro; m++ {
				bwd(m)
			}
		} else {
			warm := min(stages-st-1, micro)
			f, b := 0, 0
			for ; f < warm; f++ {
				fwd(f)
			}
			for ; f < micro; f++ {
				fwd(f)
				bwd(b)
				b++
			}
			for ; b < micro; b++ {
				bwd(b)
			}
		}
		out[st] = acts
	}
	return out
}

func TestGPipeAnd1F1BProgramsUnchanged(t *testing.T) {
	for _, name := range []string{GPipe, OneFOneB} {
		for p := 1; p <= 8; p++ {
			for m := 1; m <= 16; m++ {
				s, err := New(name, p, m)
				if err != nil {
					t.Fatalf("%s p=%d m=%d: %v", name, p, m, err)
				}
				want := legacy(name, p, m)
				for st := range want {
					if got := progText(s.Steps[st]); got != strings.Join(want[st], " ") {
						t.Fatalf("%s p=%d m=%d stage %d:\n got %s\nwant %s", name, p, m, st, got, strings.Join(want[st], " "))
					}
				}
				// the generic transfer placement rebuilds them from the
				// compute order alone
				comp := make([][]Action, p)
				for st, acts := range s.Steps {
					for _, a := range acts {
						if a.Kind.compute() {
							comp[st] = append(comp[st], a)
						}
					}
				}
				again := withTransfers(name, p, m, 1, comp)
				for st := range want {
					if got := progText(again.Steps[st]); got != strings.Join(want[st], " ") {
						t.Fatalf("withTransfers %s p=%d m=%d stage %d:\n got %s\nwant %s", name, p, m, st, got, strings.Join(want[st], " "))
					}
				}
			}
		}
	}
}

func TestOneFOneBShape(t *testing.T) {
	s, _ := New(OneFOneB, 2, 3)
	want := []string{
		"F0 sendA0 F1 sendA1 recvG0 B0 F2 sendA2 recvG1 B1 recvG2 B2",
		"recvA0 F0 B0 sendG0 recvA1 F1 B1 sendG1 recvA2 F2 B2 sendG2",
	}
	for st, acts := range s.Steps {
		if got := progText(acts); got != want[st] {
			t.Errorf("stage %d: %s\nwant      %s", st, got, want[st])
		}
	}
}

func TestZBH1Shape(t *testing.T) {
	s, err := Generate(Spec{Name: ZBH1, Stages: 2, Micro: 3})
	if err != nil {
		t.Fatal(err)
	}
	// stage 1 delays each weight gradient by one micro-batch
	want := []string{
		"F0 sendA0 F1 sendA1 recvG0 Bi0 W0 F2 sendA2 recvG1 Bi1 W1 recvG2 Bi2 W2",
		"recvA0 F0 Bi0 sendG0 recvA1 F1 Bi1 sendG1 W0 recvA2 F2 Bi2 sendG2 W1 W2",
	}
	for st, acts := range s.Steps {
		if got := progText(acts); got != want[st] {
			t.Errorf("stage %d: %s\nwant      %s", st, got, want[st])
		}
	}
}

func TestInterleavedShape(t *testing.T) {
	s, err := Generate(Spec{Name: Interleaved, Stages: 2, Micro: 2, Virtual: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Megatron's order: micro-batches 0,1 through chunk 0, then chunk 1;
	// stage 0 warms up with 2(p-1)+(V-1)p = 4 chunk forwards, stage 1 with 2
	want := []string{
		"F0 sendA0 F1 sendA1 recvA0c1 F0c1 sendA0c1 recvA1c1 F1c1 sendA1c1 recvG0c1 B0c1 sendG0c1 recvG1c1 B1c1 sendG1c1 recvG0 B0 recvG1 B1",
		"recvA0 F0 sendA0 recvA1 F1 sendA1 recvA0c1 F0c1 B0c1 sendG0c1 recvA1c1 F1c1 B1c1 sendG1c1 recvG0 B0 sendG0 recvG1 B1 sendG1",
	}
	for st, acts := range s.Steps {
		if got := progText(acts); got != want[st] {
			t.Errorf("stage %d: %s\nwant      %s", st, got, want[st])
		}
	}
}

// TestEveryGeneratedScheduleChecks generates every schedule over p in 1..8,
// m in 1..16, V in 1..4: each is accepted by the checker (Generate runs it)
// and simulates to the end, or is refused with the reason.
func TestEveryGeneratedScheduleChecks(t *testing.T) {
	n := 0
	for _, name := range Names {
		for p := 1; p <= 8; p++ {
			for m := 1; m <= 16; m++ {
				for v := 1; v <= 4; v++ {
					spec := Spec{Name: name, Stages: p, Micro: m, Virtual: v}
					s, err := Generate(spec)
					var want string
					switch {
					case v > 1 && name != Interleaved:
						want = "one model chunk per stage"
					case v > 1 && p == 1:
						want = "at least 2 stages"
					case v > 1 && m%p != 0:
						want = "multiple of the stages"
					}
					if want != "" {
						if err == nil || !strings.Contains(err.Error(), want) {
							t.Fatalf("%+v: error %v, want one containing %q", spec, err, want)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%+v: %v", spec, err)
					}
					if err := s.Check(); err != nil {
						t.Fatalf("%+v: %v", spec, err)
					}
					if _, err := s.Simulate(Costs{F: 1, B: 1.3, W: 0.7, Send: 0.2}); err != nil {
						t.Fatalf("%+v: %v", spec, err)
					}
					checkSlots(t, s)
					checkWeightOrder(t, s)
					n++
				}
			}
		}
	}
	t.Logf("%d schedules generated and checked", n)
}

// checkSlots verifies Slots: indices below InFlight, never two live pairs
// in one buffer.
func checkSlots(t *testing.T, s *Schedule) {
	t.Helper()
	for st := 0; st < s.Stages; st++ {
		slots, n := s.Slots(st), s.InFlight(st)
		live := map[int][2]int{}
		for _, a := range s.Steps[st] {
			k := [2]int{a.Micro, a.Chunk}
			switch a.Kind {
			case Forward:
				i := slots[k]
				if i < 0 || i >= n {
					t.Fatalf("%s stage %d: %s in slot %d of %d", s.Name, st, a, i, n)
				}
				if o, busy := live[i]; busy {
					t.Fatalf("%s stage %d: %s in slot %d still held by %v", s.Name, st, a, i, o)
				}
				live[i] = k
			case Backward, BackwardWeight:
				delete(live, slots[k])
			}
		}
	}
}

// checkWeightOrder: each chunk's weight gradients (or backwards) run in
// micro-batch order, so gradient sums accumulate as in 1F1B.
func checkWeightOrder(t *testing.T, s *Schedule) {
	t.Helper()
	for st, acts := range s.Steps {
		next := make([]int, s.Chunks())
		for _, a := range acts {
			if a.Kind == Backward || a.Kind == BackwardWeight {
				if a.Micro != next[a.Chunk] {
					t.Fatalf("%s p=%d m=%d stage %d: %s, want micro-batch %d next", s.Name, s.Stages, s.Micro, st, a, next[a.Chunk])
				}
				next[a.Chunk]++
			}
		}
	}
}

func TestNewRefusesWhatTheExecutorCannotRun(t *testing.T) {
	for _, name := range []string{ZBH1, ZBH2} {
		_, err := New(name, 4, 8)
		if err == nil || !strings.Contains(err.Error(), "input gradient and weight gradient") {
			t.Errorf("New(%s): %v", name, err)
		}
	}
	// interleaved through New has one chunk: it is 1F1B's program
	s, err := New(Interleaved, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	if s.Needs() != 0 || progText(s.Steps[0]) != strings.Join(legacy(OneFOneB, 4, 8)[0], " ") {
		t.Fatalf("interleaved V=1: needs %v, %s", s.Needs(), progText(s.Steps[0]))
	}
	v, _ := Generate(Spec{Name: Interleaved, Stages: 2, Micro: 4, Virtual: 2})
	if v.Needs() != NeedsVirtualStages {
		t.Fatalf("interleaved V=2 needs %v", v.Needs())
	}
	if _, err := New("zigzag", 2, 2); err == nil || !strings.Contains(err.Error(), "zb-h1") {
		t.Fatalf("unknown schedule: %v", err)
	}
	for _, bad := range []Spec{{OneFOneB, 0, 4, 1}, {OneFOneB, 2, 0, 1}, {Interleaved, 2, 4, -1}} {
		if _, err := Generate(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestInFlight(t *testing.T) {
	for p := 1; p <= 8; p++ {
		for m := 1; m <= 16; m++ {
			g, _ := New(GPipe, p, m)
			f, _ := New(OneFOneB, p, m)
			h1, _ := Generate(Spec{Name: ZBH1, Stages: p, Micro: m})
			h2, _ := Generate(Spec{Name: ZBH2, Stages: p, Micro: m})
			for st := 0; st < p; st++ {
				if got := g.InFlight(st); got != m {
					t.Errorf("gpipe p=%d m=%d stage %d: %d in flight, want %d", p, m, st, got, m)
				}
				if got, want := f.InFlight(st), min(p-st, m); got != want {
					t.Errorf("1f1b p=%d m=%d stage %d: %d in flight, want %d", p, m, st, got, want)
				}
				// ZB-H1: 1F1B's count before the input gradient, and
				// never more than 1F1B's peak (stage 0) before the weight
				// gradient
				if got, want := h1.AwaitingInputGrad(st), f.InFlight(st); got != want {
					t.Errorf("zb-h1 p=%d m=%d stage %d: %d awaiting B, want %d", p, m, st, got, want)
				}
				if got, want := h1.InFlight(st), f.InFlight(0); got > want {
					t.Errorf("zb-h1 p=%d m=%d stage %d: %d in flight, 1F1B's peak is %d", p, m, st, got, want)
				}
				if got, want := h2.AwaitingInputGrad(st), min(2*(p-st)-1, m); got > want {
					t.Errorf("zb-h2 p=%d m=%d stage %d: %d awaiting B, limit %d", p, m, st, got, want)
				}
				if got, want := h2.InFlight(st), min(2*p-1, m); got > want {
					t.Errorf("zb-h2 p=%d m=%d stage %d: %d in flight, limit %d", p, m, st, got, want)
				}
			}
		}
	}
	// interleaved counts chunk buffers: Megatron's warm-up plus one
	s, _ := Generate(Spec{Name: Interleaved, Stages: 4, Micro: 16, Virtual: 2})
	if got, want := s.InFlight(0), 2*3+4+1; got != want {
		t.Fatalf("interleaved p=4 V=2 stage 0: %d chunk buffers, want %d", got, want)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestSimulatedBubbleMatchesTheory runs each schedule on the cost model
// where its published formula holds and compares.
func TestSimulatedBubbleMatchesTheory(t *testing.T) {
	for p := 1; p <= 8; p++ {
		for m := 1; m <= 16; m++ {
			for _, name := range []string{GPipe, OneFOneB} {
				s, _ := New(name, p, m)
				for _, c := range []Costs{UnitCosts, {F: 1, B: 2}, {F: 1, B: 0.5, W: 1.5}} {
					sim, err := s.Simulate(c)
					if err != nil {
						t.Fatal(err)
					}
					if !near(sim.Bubble(), s.TheoreticalBubble()) {
						t.Errorf("%s p=%d m=%d %+v: simulated %.4f, theory %.4f", name, p, m, c, sim.Bubble(), s.TheoreticalBubble())
					}
				}
			}
			for v := 1; v <= 4 && p > 1 && m%p == 0; v++ {
				s, err := Generate(Spec{Name: Interleaved, Stages: p, Micro: m, Virtual: v})
				if err != nil {
					t.Fatal(err)
				}
				sim, _ := s.Simulate(Costs{F: 1, B: 2})
				if !near(sim.Bubble(), s.TheoreticalBubble()) {
					t.Errorf("interleaved p=%d m=%d V=%d: simulated %.4f, theory %.4f", p, m, v, sim.Bubble(), s.TheoreticalBubble())
				}
			}
			if m < p {
				continue // the zero-bubble formulas assume m >= p
			}
			for _, name := range []string{ZBH1, ZBH2} {
				s, _ := Generate(Spec{Name: name, Stages: p, Micro: m})
				sim, _ := s.Simulate(UnitCosts)
				if !near(sim.Bubble(), s.TheoreticalBubble()) {
					t.Errorf("%s p=%d m=%d: simulated %.4f, theory %.4f", name, p, m, sim.Bubble(), s.TheoreticalBubble())
				}
				if name == ZBH2 && m >= 2*p {
					for st := 0; st < p; st++ {
						if w := sim.WindowIdle(st); w > 1e-9 {
							t.Errorf("zb-h2 p=%d m=%d stage %d idles %.4f of the step between its first and last compute", p, m, st, w)
						}
					}
				}
			}
		}
	}
}

// TestIssueTargetsOnTheCostModel: pp2, 4 micro-batches, compute-bound
// (free transfers): interleaved V=2 takes 4.5 units of (F+B) against 1F1B's
// 5, ZB-H1's bubble is under 0.45x 1F1B's.
func TestIssueTargetsOnTheCostModel(t *testing.T) {
	run := func(spec Spec) *Sim {
		s, err := Generate(spec)
		if err != nil {
			t.Fatal(err)
		}
		sim, err := s.Simulate(UnitCosts)
		if err != nil {
			t.Fatal(err)
		}
		return sim
	}
	f := run(Spec{Name: OneFOneB, Stages: 2, Micro: 4})
	il := run(Spec{Name: Interleaved, Stages: 2, Micro: 4, Virtual: 2})
	zb := run(Spec{Name: ZBH1, Stages: 2, Micro: 4})
	if !near(f.Makespan, 5*3) || !near(il.Makespan, 4.5*3) {
		t.Fatalf("makespans 1f1b %g, interleaved %g; want 15 and 13.5", f.Makespan, il.Makespan)
	}
	if r := zb.Bubble() / f.Bubble(); r > 0.45 {
		t.Fatalf("zb-h1 bubble %.3f is %.2fx 1f1b's %.3f", zb.Bubble(), r, f.Bubble())
	}
}

func TestSimulateSendLatency(t *testing.T) {
	// p=2, m=1: F on stage 0, latency, F and B on stage 1, latency, B on 0
	s, _ := New(OneFOneB, 2, 1)
	sim, err := s.Simulate(Costs{F: 1, B: 1, W: 1, Send: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 0.25 + 3 + 0.25 + 2; !near(sim.Makespan, want) {
		t.Fatalf("makespan %g, want %g", sim.Makespan, want)
	}
	if _, err := s.Simulate(Costs{F: -1}); err == nil {
		t.Fatal("negative cost accepted")
	}
}

func TestWeightGradDone(t *testing.T) {
	f, _ := New(OneFOneB, 3, 5)
	zb, _ := Generate(Spec{Name: ZBH1, Stages: 3, Micro: 5})
	il, _ := Generate(Spec{Name: Interleaved, Stages: 3, Micro: 6, Virtual: 2})
	for _, s := range []*Schedule{f, zb, il} {
		for st := 0; st < s.Stages; st++ {
			done := s.WeightGradDone(st)
			for c, i := range done {
				a := s.Steps[st][i]
				if a.Chunk != c || a.Kind != Backward && a.Kind != BackwardWeight {
					t.Fatalf("%s stage %d chunk %d: done at %s", s.Name, st, c, a)
				}
				for _, b := range s.Steps[st][i+1:] {
					if b.Chunk == c && (b.Kind == Backward || b.Kind == BackwardWeight) {
						t.Fatalf("%s stage %d chunk %d: %s after the final one", s.Name, st, c, b)
					}
				}
			}
		}
	}
}

func TestChunks(t *testing.T) {
	got, err := Chunks(2, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	// chunks of 3, 3, 2, 2 layers: global 0 and 2 on stage 0, 1 and 3 on 1
	want := [][]ChunkLayers{{{0, 0, 3}, {2, 6, 8}}, {{1, 3, 6}, {3, 8, 10}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for p := 1; p <= 8; p++ {
		for v := 1; v <= 4; v++ {
			for layers := p * v; layers <= 3*p*v+1; layers++ {
				cs, err := Chunks(p, v, layers)
				if err != nil {
					t.Fatal(err)
				}
				// every layer exactly once, in global chunk order
				next := 0
				for g := 0; g < p*v; g++ {
					c := cs[g%p][g/p]
					if c.Global != g || c.Lo != next || c.Hi <= c.Lo {
						t.Fatalf("p=%d v=%d layers=%d: chunk %d is %+v", p, v, layers, g, c)
					}
					next = c.Hi
				}
				if next != layers {
					t.Fatalf("p=%d v=%d layers=%d: chunks end at %d", p, v, layers, next)
				}
			}
		}
	}
	if _, err := Chunks(4, 2, 7); err == nil || !strings.Contains(err.Error(), "at least one layer") {
		t.Fatalf("too few layers: %v", err)
	}
}

func TestWritePNG(t *testing.T) {
	for _, spec := range []Spec{{Name: OneFOneB, Stages: 4, Micro: 8}, {Name: Interleaved, Stages: 2, Micro: 4, Virtual: 3}, {Name: ZBH2, Stages: 3, Micro: 6}} {
		s, err := Generate(spec)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := s.WritePNG(&buf, UnitCosts); err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dy() < 40+spec.Stages*34 {
			t.Fatalf("%s: image %v too small for %d stages", spec.Name, b, spec.Stages)
		}
	}
}

type failAt struct {
	n    int
	seen []Action
}

func (f *failAt) Do(_ context.Context, a Action) error {
	f.seen = append(f.seen, a)
	if len(f.seen) == f.n {
		return errors.New("boom")
	}
	return nil
}

func TestRunWalksAndNamesTheAction(t *testing.T) {
	s, _ := Generate(Spec{Name: Interleaved, Stages: 2, Micro: 2, Virtual: 2})
	st := &failAt{n: -1}
	if err := Run(context.Background(), s, 1, st); err != nil {
		t.Fatal(err)
	}
	if progText(st.seen) != progText(s.Steps[1]) {
		t.Fatalf("walked %s", progText(st.seen))
	}
	st = &failAt{n: 8}
	err := Run(context.Background(), s, 1, st)
	if err == nil || !strings.Contains(err.Error(), "stage 1, action 7 (F0c1)") {
		t.Fatalf("error %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, s, 0, &failAt{n: -1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}

// ChunkSlots never gives two (micro-batch, chunk) pairs alive at once the
// same buffer of their chunk, and needs no more buffers in all than
// InFlight; Pending counts the receives held before their compute.
func TestChunkSlots(t *testing.T) {
	for _, spec := range []Spec{{Name: Interleaved, Stages: 2, Micro: 4, Virtual: 2}, {Name: Interleaved, Stages: 4, Micro: 8, Virtual: 2}, {Name: Interleaved, Stages: 2, Micro: 6, Virtual: 3}, {Name: ZBH2, Stages: 4, Micro: 6}, {Name: OneFOneB, Stages: 3, Micro: 5}} {
		s, err := Generate(spec)
		if err != nil {
			t.Fatal(err)
		}
		for st := 0; st < s.Stages; st++ {
			slot, count := s.ChunkSlots(st)
			busy := map[[2]int]bool{} // {chunk, buffer}
			total := 0
			for _, n := range count {
				total += n
			}
			if total < s.InFlight(st) || len(count) != s.Chunks() {
				t.Errorf("%s stage %d: %v buffers per chunk for %d in flight", s.Name, st, count, s.InFlight(st))
			}
			for _, a := range s.Steps[st] {
				b := [2]int{a.Chunk, slot[[2]int{a.Micro, a.Chunk}]}
				if b[1] < 0 || b[1] >= count[a.Chunk] {
					t.Fatalf("%s stage %d: %s has buffer %d of %d", s.Name, st, a, b[1], count[a.Chunk])
				}
				switch a.Kind {
				case Forward:
					if busy[b] {
						t.Errorf("%s stage %d: %s takes busy buffer %v", s.Name, st, a, b)
					}
					busy[b] = true
				case Backward, BackwardWeight:
					busy[b] = false
				}
			}
			if st > 0 && s.Pending(st, RecvAct) < 1 || st < s.Stages-1 && s.Pending(st, RecvGrad) < 1 {
				t.Errorf("%s stage %d: pending receives %d, %d", s.Name, st, s.Pending(st, RecvAct), s.Pending(st, RecvGrad))
			}
		}
	}
	// a hand-made program: two activations received before either forward
	s := &Schedule{Name: "hand", Stages: 2, Micro: 2, Steps: [][]Action{nil, {{RecvAct, 0, 0}, {RecvAct, 1, 0}, {Forward, 0, 0}, {Forward, 1, 0}}}}
	if got := s.Pending(1, RecvAct); got != 2 {
		t.Errorf("pending activations %d, want 2", got)
	}
}

// Interleaved 1F1B finishes a stage's chunks last first: chunk V-1's last
// backward comes before chunk V-2's, and so on. The flat gradient buffer
// lays the last layers first, so the executor can start data-parallel
// reductions chunk by chunk as a growing prefix (trainer/chunks.go).
func TestInterleavedFinishesChunksLastFirst(t *testing.T) {
	for _, spec := range []Spec{{Name: Interleaved, Stages: 2, Micro: 2, Virtual: 2}, {Name: Interleaved, Stages: 2, Micro: 8, Virtual: 3}, {Name: Interleaved, Stages: 4, Micro: 8, Virtual: 2}, {Name: Interleaved, Stages: 4, Micro: 4, Virtual: 4}} {
		s, err := Generate(spec)
		if err != nil {
			t.Fatal(err)
		}
		for st := 0; st < s.Stages; st++ {
			done := s.WeightGradDone(st)
			for c := 1; c < len(done); c++ {
				if done[c] >= done[c-1] {
					t.Errorf("%+v stage %d: chunk %d's gradients final at step %d, chunk %d's at %d", spec, st, c, done[c], c-1, done[c-1])
				}
			}
		}
	}
}
