package pipeline

import (
	"fmt"
	"strings"
)

// Kind is what an action does.
type Kind int

// The actions a stage can take.
const (
	Forward  Kind = iota // run the stage forward on a micro-batch
	Backward             // run the stage backward on a micro-batch
	SendAct              // send the forward output to the next stage
	RecvAct              // receive the forward input from the previous stage
	SendGrad             // send the input gradient to the previous stage
	RecvGrad             // receive the output gradient from the next stage
)

var kindNames = [...]string{"F", "B", "sendA", "recvA", "sendG", "recvG"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Action is one step of a stage's program.
type Action struct {
	Kind  Kind
	Micro int // micro-batch index
}

func (a Action) String() string { return fmt.Sprintf("%s%d", a.Kind, a.Micro) }

// Schedule is every stage's program for one optimizer step.
type Schedule struct {
	Name   string
	Stages int
	Micro  int
	Steps  [][]Action // Steps[stage] in execution order
}

// Names of the generators.
const (
	GPipe    = "gpipe"
	OneFOneB = "1f1b"
)

// New generates a schedule by name for stages x micro-batches.
func New(name string, stages, micro int) (*Schedule, error) {
	if stages <= 0 {
		return nil, fmt.Errorf("pipeline: %d stages", stages)
	}
	if micro <= 0 {
		return nil, fmt.Errorf("pipeline: %d micro-batches", micro)
	}
	var s *Schedule
	switch strings.ToLower(name) {
	case GPipe:
		s = gpipe(stages, micro)
	case OneFOneB:
		s = oneFOneB(stages, micro)
	default:
		return nil, fmt.Errorf("pipeline: unknown schedule %q (have %s, %s)", name, GPipe, OneFOneB)
	}
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("pipeline: generated %s schedule is invalid: %w", name, err)
	}
	return s, nil
}

// forward and backward append one micro-batch's actions with its transfers.
func forward(acts []Action, stage, stages, m int) []Action {
	if stage > 0 {
		acts = append(acts, Action{RecvAct, m})
	}
	acts = append(acts, Action{Forward, m})
	if stage < stages-1 {
		acts = append(acts, Action{SendAct, m})
	}
	return acts
}

func backward(acts []Action, stage, stages, m int) []Action {
	if stage < stages-1 {
		acts = append(acts, Action{RecvGrad, m})
	}
	acts = append(acts, Action{Backward, m})
	if stage > 0 {
		acts = append(acts, Action{SendGrad, m})
	}
	return acts
}

// gpipe: every micro-batch forward, then every micro-batch backward.
func gpipe(stages, micro int) *Schedule {
	s := &Schedule{Name: GPipe, Stages: stages, Micro: micro, Steps: make([][]Action, stages)}
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
	s := &Schedule{Name: OneFOneB, Stages: stages, Micro: micro, Steps: make([][]Action, stages)}
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

// InFlight is the largest number of micro-batches whose activations stage
// holds at once (forwarded, not yet backwarded): the number of activation
// buffers the executor needs.
func (s *Schedule) InFlight(stage int) int {
	cur, peak := 0, 0
	for _, a := range s.Steps[stage] {
		switch a.Kind {
		case Forward:
			cur++
			peak = max(peak, cur)
		case Backward:
			cur--
		}
	}
	return peak
}

// TheoreticalBubble is GPipe/1F1B's idle fraction (p-1)/(m+p-1).
func (s *Schedule) TheoreticalBubble() float64 {
	return float64(s.Stages-1) / float64(s.Micro+s.Stages-1)
}

// Table renders the programs as text, one row per stage.
func (s *Schedule) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule %s: %d stages, %d micro-batches, theoretical bubble %.1f%%\n", s.Name, s.Stages, s.Micro, 100*s.TheoreticalBubble())
	for st, acts := range s.Steps {
		fmt.Fprintf(&b, "stage %d (max %d in flight):", st, s.InFlight(st))
		for _, a := range acts {
			fmt.Fprintf(&b, " %s", a)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
