package pipeline

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// parse reads a program written as progText prints it.
func parse(t *testing.T, prog string) []Action {
	t.Helper()
	var acts []Action
	for _, w := range strings.Fields(prog) {
		var a Action
		found := false
		// longest kind name first: "B" is a prefix of "Bi"
		for _, k := range []Kind{SendAct, RecvAct, SendGrad, RecvGrad, BackwardInput, BackwardWeight, Forward, Backward} {
			name := k.String()
			if !strings.HasPrefix(w, name) {
				continue
			}
			rest := w[len(name):]
			var err error
			if i := strings.IndexByte(rest, 'c'); i >= 0 {
				_, err = fmtSscan(rest[:i]+" "+rest[i+1:], &a.Micro, &a.Chunk)
			} else {
				_, err = fmtSscan(rest, &a.Micro)
			}
			if err != nil {
				t.Fatalf("bad action %q: %v", w, err)
			}
			a.Kind, found = k, true
			break
		}
		if !found {
			t.Fatalf("bad action %q", w)
		}
		acts = append(acts, a)
	}
	return acts
}

func TestParseRoundTrip(t *testing.T) {
	for _, spec := range []Spec{{Name: Interleaved, Stages: 2, Micro: 4, Virtual: 3}, {Name: ZBH2, Stages: 3, Micro: 5}} {
		s, _ := Generate(spec)
		for _, acts := range s.Steps {
			if got := parse(t, progText(acts)); !slices.Equal(got, acts) {
				t.Fatalf("%s: round trip of %s", spec.Name, progText(acts))
			}
		}
	}
}

// TestCheckerRejectsBrokenSchedules: hand-broken programs, each rejected
// with a message naming the stage and the offending action.
func TestCheckerRejectsBrokenSchedules(t *testing.T) {
	il, _ := Generate(Spec{Name: Interleaved, Stages: 2, Micro: 2, Virtual: 2})
	for _, tc := range []struct {
		name    string
		virtual int
		micro   int
		progs   []string
		want    []string // substrings of the error
	}{
		{"both stages wait for each other", 1, 1, []string{
			"F0 recvG0 sendA0 B0",
			"recvA0 F0 B0 sendG0",
		}, []string{"deadlock", "stage 0 at step 1 recvG0", "stage 1 at step 0 recvA0"}},
		{"an activation never sent", 1, 2, []string{
			"F0 sendA0 F1 recvG0 B0 recvG1 B1",
			"recvA0 F0 B0 sendG0 recvA1 F1 B1 sendG1",
		}, []string{"stage 0: sendA1", "has 0, want 1"}},
		{"backward before forward", 1, 1, []string{"B0 F0"}, []string{"stage 0 step 0: B0 before F0"}},
		{"forward twice", 1, 1, []string{"F0 F0 B0"}, []string{"stage 0 step 1: F0 appears twice"}},
		{"weight gradient before its input gradient", 1, 1, []string{
			"F0 sendA0 recvG0 W0 Bi0",
			"recvA0 F0 Bi0 sendG0 W0",
		}, []string{"stage 0 step 3: W0 before Bi0"}},
		{"weight gradient missing", 1, 2, []string{
			"F0 sendA0 F1 sendA1 recvG0 Bi0 W0 recvG1 Bi1",
			"recvA0 F0 Bi0 sendG0 W0 recvA1 F1 Bi1 sendG1 W1",
		}, []string{"stage 0: B1", "0 backwards, 1 input gradients and 0 weight gradients"}},
		{"backward and input gradient both", 1, 1, []string{
			"F0 sendA0 recvG0 Bi0 B0 W0",
			"recvA0 F0 B0 sendG0",
		}, []string{"stage 0 step 4: B0", "already has a backward"}},
		{"gradient sent before the input gradient", 1, 1, []string{
			"F0 sendA0 recvG0 B0",
			"recvA0 F0 sendG0 Bi0 W0",
		}, []string{"stage 1 step 2: sendG0 before the input gradient"}},
		{"first chunk receives", 1, 1, []string{"recvA0 F0 B0"}, []string{"stage 0 step 0: recvA0", "model's first"}},
		{"last chunk sends", 2, 2, []string{
			progText(il.Steps[0]),
			progText(il.Steps[1]) + " sendA0c1",
		}, []string{"stage 1 step 20: sendA0c1", "model's last"}},
		{"chunk out of range", 2, 2, []string{
			progText(il.Steps[0]) + " F0c2",
			progText(il.Steps[1]),
		}, []string{"stage 0 step 20: F0c2", "chunk 2 outside 0..1"}},
		{"micro-batch out of range", 1, 1, []string{"F1 B1"}, []string{"stage 0 step 0: F1", "micro-batch 1 outside 0..0"}},
		{"receives out of send order", 2, 2, []string{
			// stage 1 receives chunk 1's inputs before chunk 0's gradients
			// are due, but stage 0 sends micro-batch 0's chunk-1 input
			// first: swap stage 1's two chunk-1 receives
			progText(il.Steps[0]),
			strings.Replace(progText(il.Steps[1]), "recvA0c1 F0c1 B0c1 sendG0c1 recvA1c1", "recvA1c1 recvA0c1 F0c1 B0c1 sendG0c1", 1),
		}, []string{"stage 1 step 6: recvA1c1 would receive sendA0 from chunk 2 sent by stage 0"}},
		{"chunk deadlock", 2, 2, []string{
			"recvG0c1 " + strings.Replace(progText(il.Steps[0]), "recvG0c1 ", "", 1),
			progText(il.Steps[1]),
		}, []string{"deadlock", "stage 0 at step 0 recvG0c1", "stage 1 at step 0 recvA0"}},
		{"split backward deadlock", 1, 2, []string{
			"F0 sendA0 recvG0 Bi0 W0 F1 sendA1 recvG1 Bi1 W1",
			// stage 1 takes both inputs before its first input gradient,
			// which stage 0 waits for before sending the second
			"recvA0 recvA1 F0 Bi0 sendG0 W0 F1 Bi1 sendG1 W1",
		}, []string{"deadlock", "stage 0 at step 2 recvG0", "stage 1 at step 1 recvA1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Schedule{Name: "broken", Stages: len(tc.progs), Micro: tc.micro, Virtual: tc.virtual}
			for _, p := range tc.progs {
				s.Steps = append(s.Steps, parse(t, p))
			}
			err := s.Check()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func fmtSscan(str string, args ...any) (int, error) { return fmt.Sscan(str, args...) }
