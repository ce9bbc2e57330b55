package pipeline

// Halves splits s into its forward half (Forward, SendAct, RecvAct) and
// its backward half (the rest), each stage's actions kept in order: the
// programs of a forward-only pass (evaluation, sampling, scoring) and of
// a backward that must wait for every micro-batch's forward (a loss over
// the whole pass, as PPO's). Split GPipe's program: its forwards all come
// before its backwards, so each half is deadlock-free on its own.
func Halves(s *Schedule) (forward, backward *Schedule) {
	forward = &Schedule{Name: s.Name + " forward", Stages: s.Stages, Micro: s.Micro, Virtual: s.Virtual, Steps: make([][]Action, s.Stages)}
	backward = &Schedule{Name: s.Name + " backward", Stages: s.Stages, Micro: s.Micro, Virtual: s.Virtual, Steps: make([][]Action, s.Stages)}
	for st, prog := range s.Steps {
		for _, a := range prog {
			switch a.Kind {
			case Forward, SendAct, RecvAct:
				forward.Steps[st] = append(forward.Steps[st], a)
			default:
				backward.Steps[st] = append(backward.Steps[st], a)
			}
		}
	}
	return forward, backward
}
