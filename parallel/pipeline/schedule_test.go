package pipeline

import (
	"strings"
	"testing"
)

func TestGeneratorsPassTheChecker(t *testing.T) {
	for _, name := range []string{GPipe, OneFOneB} {
		for p := 1; p <= 6; p++ {
			for m := 1; m <= 9; m++ {
				s, err := New(name, p, m)
				if err != nil {
					t.Fatalf("%s p=%d m=%d: %v", name, p, m, err)
				}
				for st := 0; st < p; st++ {
					want := m
					if name == OneFOneB {
						want = min(p-st, m)
					}
					if got := s.InFlight(st); got != want {
						t.Errorf("%s p=%d m=%d stage %d: %d in flight, want %d", name, p, m, st, got, want)
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
		var got []string
		for _, a := range acts {
			got = append(got, a.String())
		}
		if strings.Join(got, " ") != want[st] {
			t.Errorf("stage %d: %s\nwant      %s", st, strings.Join(got, " "), want[st])
		}
	}
}

func TestCheckerFindsDeadlockAndMissingReceive(t *testing.T) {
	// Both stages wait for each other first: a deadlock.
	dead := &Schedule{Name: "bad", Stages: 2, Micro: 1, Steps: [][]Action{
		{{Forward, 0}, {RecvGrad, 0}, {SendAct, 0}, {Backward, 0}},
		{{RecvAct, 0}, {Forward, 0}, {Backward, 0}, {SendGrad, 0}},
	}}
	if err := dead.Check(); err == nil || !strings.Contains(err.Error(), "deadlock") {
		t.Fatalf("deadlock not found: %v", err)
	}
	// Stage 0 never sends micro-batch 1's activation.
	missing := &Schedule{Name: "bad", Stages: 2, Micro: 2, Steps: [][]Action{
		{{Forward, 0}, {SendAct, 0}, {Forward, 1}, {RecvGrad, 0}, {Backward, 0}, {RecvGrad, 1}, {Backward, 1}},
		{{RecvAct, 0}, {Forward, 0}, {Backward, 0}, {SendGrad, 0}, {RecvAct, 1}, {Forward, 1}, {Backward, 1}, {SendGrad, 1}},
	}}
	if err := missing.Check(); err == nil || !strings.Contains(err.Error(), "recvA1") {
		t.Fatalf("missing send not found: %v", err)
	}
	// Backward before forward.
	order := &Schedule{Name: "bad", Stages: 1, Micro: 1, Steps: [][]Action{{{Backward, 0}, {Forward, 0}}}}
	if err := order.Check(); err == nil {
		t.Fatal("backward before forward accepted")
	}
	if _, err := New("zigzag", 2, 2); err == nil {
		t.Fatal("unknown schedule accepted")
	}
}

func TestBubble(t *testing.T) {
	s, _ := New(GPipe, 4, 8)
	if got := s.TheoreticalBubble(); got != 3.0/11 {
		t.Fatalf("bubble %g", got)
	}
}

func TestTimelineBubbleMatchesTheory(t *testing.T) {
	for _, name := range []string{GPipe, OneFOneB} {
		s, _ := New(name, 4, 8)
		// with backward = forward the classic formula is exact
		if got, want := s.SimulatedBubble(1, 1), s.TheoreticalBubble(); got < want-1e-9 || got > want+1e-9 {
			t.Errorf("%s: simulated bubble %.4f, theory %.4f", name, got, want)
		}
	}
}
