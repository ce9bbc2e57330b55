package pipeline

import (
	"fmt"
	"strings"
)

// Check runs all stages' programs together in memory. Sends never block
// (the executor posts them asynchronously); a receive waits for its message.
// It fails when a stage receives a message nobody sends, forwards or
// backwards a micro-batch twice or out of order, leaves one out, or when the
// programs can reach a state where no stage can move (a deadlock), naming
// the blocked actions.
func (s *Schedule) Check() error {
	if len(s.Steps) != s.Stages {
		return fmt.Errorf("%d programs for %d stages", len(s.Steps), s.Stages)
	}
	if err := s.checkLocal(); err != nil {
		return err
	}
	type msg struct {
		kind     Kind // SendAct or SendGrad
		from, to int
		micro    int
	}
	pending := map[msg]int{}
	pc := make([]int, s.Stages)
	for {
		moved, done := false, true
		for st := 0; st < s.Stages; st++ {
			for pc[st] < len(s.Steps[st]) {
				a := s.Steps[st][pc[st]]
				switch a.Kind {
				case SendAct:
					pending[msg{SendAct, st, st + 1, a.Micro}]++
				case SendGrad:
					pending[msg{SendGrad, st, st - 1, a.Micro}]++
				case RecvAct:
					k := msg{SendAct, st - 1, st, a.Micro}
					if pending[k] == 0 {
						goto blocked
					}
					pending[k]--
				case RecvGrad:
					k := msg{SendGrad, st + 1, st, a.Micro}
					if pending[k] == 0 {
						goto blocked
					}
					pending[k]--
				}
				pc[st]++
				moved = true
			}
			continue
		blocked:
			done = false
		}
		if done {
			break
		}
		if !moved {
			var stuck []string
			for st := 0; st < s.Stages; st++ {
				if pc[st] < len(s.Steps[st]) {
					stuck = append(stuck, fmt.Sprintf("stage %d at %s", st, s.Steps[st][pc[st]]))
				}
			}
			return fmt.Errorf("deadlock: %s", strings.Join(stuck, ", "))
		}
	}
	for k, n := range pending {
		if n != 0 {
			return fmt.Errorf("stage %d sends %s%d to stage %d, which never receives it", k.from, k.kind, k.micro, k.to)
		}
	}
	return nil
}

// checkLocal verifies each stage's own program: every micro-batch is
// forwarded once then backwarded once, with the transfers a stage in its
// position needs, in dependency order.
func (s *Schedule) checkLocal() error {
	for st, acts := range s.Steps {
		seen := map[Action]int{}
		for i, a := range acts {
			if a.Micro < 0 || a.Micro >= s.Micro {
				return fmt.Errorf("stage %d step %d: micro-batch %d outside 0..%d", st, i, a.Micro, s.Micro-1)
			}
			seen[a]++
			if seen[a] > 1 {
				return fmt.Errorf("stage %d: %s appears twice", st, a)
			}
			need := func(k Kind) error {
				if seen[Action{k, a.Micro}] == 0 {
					return fmt.Errorf("stage %d step %d: %s before %s", st, i, a, Action{k, a.Micro})
				}
				return nil
			}
			var err error
			switch a.Kind {
			case Forward:
				if st > 0 {
					err = need(RecvAct)
				}
			case SendAct:
				if st == s.Stages-1 {
					err = fmt.Errorf("stage %d is last but sends %s", st, a)
				} else {
					err = need(Forward)
				}
			case RecvAct:
				if st == 0 {
					err = fmt.Errorf("stage 0 is first but receives %s", a)
				}
			case Backward:
				if err = need(Forward); err == nil && st < s.Stages-1 {
					err = need(RecvGrad)
				}
			case SendGrad:
				if st == 0 {
					err = fmt.Errorf("stage 0 is first but sends %s", a)
				} else {
					err = need(Backward)
				}
			case RecvGrad:
				if st == s.Stages-1 {
					err = fmt.Errorf("stage %d is last but receives %s", st, a)
				}
			default:
				err = fmt.Errorf("stage %d step %d: unknown action kind %d", st, i, a.Kind)
			}
			if err != nil {
				return err
			}
		}
		for m := 0; m < s.Micro; m++ {
			if seen[Action{Forward, m}] != 1 || seen[Action{Backward, m}] != 1 {
				return fmt.Errorf("stage %d: micro-batch %d forwarded %d and backwarded %d times, want once each", st, m, seen[Action{Forward, m}], seen[Action{Backward, m}])
			}
		}
	}
	return nil
}
