package pipeline

import (
	"fmt"
	"strings"
)

// message is one transfer on the wire: what was sent, by which global chunk.
type message struct {
	kind  Kind // SendAct or SendGrad
	micro int
	from  int // global chunk of the sender
}

func (m message) String() string { return fmt.Sprintf("%s%d from chunk %d", m.kind, m.micro, m.from) }

// Check runs all stages' programs together in memory. Sends never block
// (the executor posts them asynchronously); a receive waits for its message.
// Messages between two stages are matched in the order they were sent (the
// transport's point-to-point channels are ordered and untagged), so a
// receive whose next message from that stage is another one is an error.
// Check fails when a stage receives a message nobody sends or one out of
// order, runs a chunk's forward, backward, input gradient or weight gradient
// of a micro-batch twice, out of dependency order or not at all, or when the
// programs can reach a state where no stage can move (a deadlock), naming
// the stage and the blocked or offending action.
func (s *Schedule) Check() error {
	if s.Stages <= 0 || s.Micro <= 0 || s.Virtual < 0 {
		return fmt.Errorf("schedule of %d stages, %d micro-batches and %d virtual stages", s.Stages, s.Micro, s.Virtual)
	}
	if len(s.Steps) != s.Stages {
		return fmt.Errorf("%d programs for %d stages", len(s.Steps), s.Stages)
	}
	if s.Chunks() > 1 && s.Stages == 1 {
		return fmt.Errorf("%d chunks on a single stage: chunks hand over through transfers between stages", s.Chunks())
	}
	if err := s.checkLocal(); err != nil {
		return err
	}
	p := s.Stages
	owner := func(g int) int { return g % p }
	// queue[from][to]: messages sent and not yet received, in send order
	queue := make([][][]message, p)
	for i := range queue {
		queue[i] = make([][]message, p)
	}
	pc := make([]int, p)
	for {
		moved, done := false, true
		for st := 0; st < p; st++ {
			for pc[st] < len(s.Steps[st]) {
				a := s.Steps[st][pc[st]]
				g := s.Global(st, a.Chunk)
				switch a.Kind {
				case SendAct:
					to := owner(g + 1)
					queue[st][to] = append(queue[st][to], message{SendAct, a.Micro, g})
				case SendGrad:
					to := owner(g - 1)
					queue[st][to] = append(queue[st][to], message{SendGrad, a.Micro, g})
				case RecvAct, RecvGrad:
					want := message{SendAct, a.Micro, g - 1}
					if a.Kind == RecvGrad {
						want = message{SendGrad, a.Micro, g + 1}
					}
					from := owner(want.from)
					q := queue[from][st]
					if len(q) == 0 {
						goto blocked
					}
					if q[0] != want {
						return fmt.Errorf("stage %d step %d: %s would receive %s sent by stage %d (messages between two stages are received in the order they are sent)", st, pc[st], a, q[0], from)
					}
					queue[from][st] = q[1:]
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
			for st := 0; st < p; st++ {
				if pc[st] < len(s.Steps[st]) {
					stuck = append(stuck, fmt.Sprintf("stage %d at step %d %s", st, pc[st], s.Steps[st][pc[st]]))
				}
			}
			return fmt.Errorf("deadlock: %s", strings.Join(stuck, ", "))
		}
	}
	for from := range queue {
		for to, q := range queue[from] {
			if len(q) > 0 {
				return fmt.Errorf("stage %d sends %s to stage %d, which never receives it", from, q[0], to)
			}
		}
	}
	return nil
}

// checkLocal verifies each stage's own program: every (micro-batch, chunk)
// is forwarded once, then either backwarded once or split into one input
// gradient followed by one weight gradient, with exactly the transfers its
// chunk's position needs, in dependency order.
func (s *Schedule) checkLocal() error {
	v := s.Chunks()
	last := s.Stages*v - 1
	for st, acts := range s.Steps {
		seen := map[Action]int{}
		for i, a := range acts {
			if a.Micro < 0 || a.Micro >= s.Micro {
				return fmt.Errorf("stage %d step %d: %s: micro-batch %d outside 0..%d", st, i, a, a.Micro, s.Micro-1)
			}
			if a.Chunk < 0 || a.Chunk >= v {
				return fmt.Errorf("stage %d step %d: %s: chunk %d outside 0..%d", st, i, a, a.Chunk, v-1)
			}
			seen[a]++
			if seen[a] > 1 {
				return fmt.Errorf("stage %d step %d: %s appears twice", st, i, a)
			}
			g := s.Global(st, a.Chunk)
			has := func(k Kind) bool { return seen[Action{k, a.Micro, a.Chunk}] > 0 }
			need := func(k Kind) error {
				if !has(k) {
					return fmt.Errorf("stage %d step %d: %s before %s", st, i, a, Action{k, a.Micro, a.Chunk})
				}
				return nil
			}
			var err error
			switch a.Kind {
			case Forward:
				if g > 0 {
					err = need(RecvAct)
				}
			case SendAct:
				if g == last {
					err = fmt.Errorf("stage %d step %d: %s, but chunk %d is the model's last", st, i, a, g)
				} else {
					err = need(Forward)
				}
			case RecvAct:
				if g == 0 {
					err = fmt.Errorf("stage %d step %d: %s, but chunk 0 is the model's first", st, i, a)
				}
			case Backward, BackwardInput:
				if has(Backward) && a.Kind == BackwardInput || has(BackwardInput) && a.Kind == Backward {
					err = fmt.Errorf("stage %d step %d: %s, but micro-batch %d of chunk %d already has a backward", st, i, a, a.Micro, a.Chunk)
				} else if err = need(Forward); err == nil && g < last {
					err = need(RecvGrad)
				}
			case BackwardWeight:
				err = need(BackwardInput)
			case SendGrad:
				if g == 0 {
					err = fmt.Errorf("stage %d step %d: %s, but chunk 0 is the model's first", st, i, a)
				} else if !has(Backward) && !has(BackwardInput) {
					err = fmt.Errorf("stage %d step %d: %s before the input gradient (%s or %s)", st, i, a,
						Action{Backward, a.Micro, a.Chunk}, Action{BackwardInput, a.Micro, a.Chunk})
				}
			case RecvGrad:
				if g == last {
					err = fmt.Errorf("stage %d step %d: %s, but chunk %d is the model's last", st, i, a, g)
				}
			default:
				err = fmt.Errorf("stage %d step %d: unknown action kind %d", st, i, a.Kind)
			}
			if err != nil {
				return err
			}
		}
		for c := 0; c < v; c++ {
			g := s.Global(st, c)
			for m := 0; m < s.Micro; m++ {
				n := func(k Kind) int { return seen[Action{k, m, c}] }
				if n(Forward) != 1 {
					return fmt.Errorf("stage %d: %s: micro-batch %d of chunk %d forwarded %d times, want once", st, Action{Forward, m, c}, m, c, n(Forward))
				}
				if n(Backward)+n(BackwardInput) != 1 || n(BackwardInput) != n(BackwardWeight) {
					return fmt.Errorf("stage %d: %s: micro-batch %d of chunk %d has %d backwards, %d input gradients and %d weight gradients, want one backward or one of each gradient",
						st, Action{Backward, m, c}, m, c, n(Backward), n(BackwardInput), n(BackwardWeight))
				}
				for _, k := range []Kind{RecvAct, SendAct, RecvGrad, SendGrad} {
					want := 1
					if (k == RecvAct || k == SendGrad) && g == 0 || (k == SendAct || k == RecvGrad) && g == last {
						want = 0
					}
					if n(k) != want {
						return fmt.Errorf("stage %d: %s: micro-batch %d of chunk %d has %d, want %d", st, Action{k, m, c}, m, c, n(k), want)
					}
				}
			}
		}
	}
	return nil
}
