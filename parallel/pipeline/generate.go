package pipeline

import "sort"

// withTransfers turns each stage's compute order (Forward, Backward,
// BackwardInput, BackwardWeight of (micro-batch, chunk)) into a full
// program: a send right after the compute that produces it, and each receive
// as late as possible before the compute that consumes it, except that
// receives from one peer stage come in the order that peer sends (the
// transport matches a pair's messages in order). Moving a receive earlier
// to keep that order never waits longer than the receive after it would:
// the peer sent the earlier message first.
func withTransfers(name string, p, m, v int, comp [][]Action) *Schedule {
	s := &Schedule{Name: name, Stages: p, Micro: m, Virtual: v, Steps: make([][]Action, p)}
	last := p*v - 1
	owner := func(g int) int { return g % p }
	// sends in each stage's program order, per destination
	type msg struct {
		recv     Action // the receive that matches it on the destination
		consumer int    // index of the consuming compute in the destination's order
	}
	sends := make([][][]msg, p) // sends[from][to]
	for r := range sends {
		sends[r] = make([][]msg, p)
	}
	// consumer index of each receive on its stage
	consumer := make([]map[Action]int, p)
	for r := 0; r < p; r++ {
		consumer[r] = map[Action]int{}
		for i, a := range comp[r] {
			g := s.Global(r, a.Chunk)
			switch a.Kind {
			case Forward:
				if g > 0 {
					consumer[r][Action{RecvAct, a.Micro, a.Chunk}] = i
				}
			case Backward, BackwardInput:
				if g < last {
					consumer[r][Action{RecvGrad, a.Micro, a.Chunk}] = i
				}
			}
		}
	}
	for r := 0; r < p; r++ {
		for _, a := range comp[r] {
			g := s.Global(r, a.Chunk)
			switch a.Kind {
			case Forward:
				if g < last {
					to := owner(g + 1)
					rc := Action{RecvAct, a.Micro, (g + 1) / p}
					sends[r][to] = append(sends[r][to], msg{rc, consumer[to][rc]})
				}
			case Backward, BackwardInput:
				if g > 0 {
					to := owner(g - 1)
					rc := Action{RecvGrad, a.Micro, (g - 1) / p}
					sends[r][to] = append(sends[r][to], msg{rc, consumer[to][rc]})
				}
			}
		}
	}
	// place receives: before[r][i] lists the receives stage r posts before
	// its compute i
	type placed struct {
		recv          Action
		pos, consumer int
	}
	for r := 0; r < p; r++ {
		var recvs []placed
		for from := 0; from < p; from++ {
			q := sends[from][r]
			pos := len(comp[r])
			for k := len(q) - 1; k >= 0; k-- {
				pos = min(pos, q[k].consumer)
				recvs = append(recvs, placed{q[k].recv, pos, q[k].consumer})
			}
		}
		sort.SliceStable(recvs, func(i, j int) bool {
			if recvs[i].pos != recvs[j].pos {
				return recvs[i].pos < recvs[j].pos
			}
			return recvs[i].consumer < recvs[j].consumer
		})
		var acts []Action
		k := 0
		for i, a := range comp[r] {
			for ; k < len(recvs) && recvs[k].pos == i; k++ {
				acts = append(acts, recvs[k].recv)
			}
			acts = append(acts, a)
			g := s.Global(r, a.Chunk)
			switch {
			case a.Kind == Forward && g < last:
				acts = append(acts, Action{SendAct, a.Micro, a.Chunk})
			case (a.Kind == Backward || a.Kind == BackwardInput) && g > 0:
				acts = append(acts, Action{SendGrad, a.Micro, a.Chunk})
			}
		}
		s.Steps[r] = acts
	}
	return s
}

// interleaved is Megatron-LM's interleaved 1F1B (Narayanan et al., 2021,
// section 2.2): stage r holds chunks r, r+p, ...; micro-batches go through
// in groups of p, each group through chunk 0, then chunk 1, and so on
// (backwards in the reverse chunk order). Stage r warms up with
// 2(p-r-1) + (V-1)p chunk forwards, then alternates one chunk forward and
// one chunk backward, then drains. With V = 1 it is 1F1B. Megatron-LM also
// turns every forward into warm-up when m = p, which its paired
// send/receive calls need; with asynchronous sends Check accepts the order
// above there too, and it holds fewer activations.
func interleaved(p, m, v int) *Schedule {
	if v == 1 {
		s := oneFOneB(p, m)
		s.Name = Interleaved
		return s
	}
	total := m * v
	fwd := func(k int) Action {
		c := (k % (p * v)) / p
		return Action{Forward, (k/(p*v))*p + k%p, c}
	}
	bwd := func(k int) Action {
		a := fwd(k)
		return Action{Backward, a.Micro, v - 1 - a.Chunk}
	}
	comp := make([][]Action, p)
	for r := 0; r < p; r++ {
		warm := min((p-r-1)*2+(v-1)*p, total)
		var acts []Action
		for k := 0; k < warm; k++ {
			acts = append(acts, fwd(k))
		}
		for k := 0; k < total-warm; k++ {
			acts = append(acts, fwd(warm+k), bwd(k))
		}
		for k := total - warm; k < total; k++ {
			acts = append(acts, bwd(k))
		}
		comp[r] = acts
	}
	return withTransfers(Interleaved, p, m, v, comp)
}

// zbH2 is ZB-H2 (Qi et al., 2023, section 2.2), built by list scheduling
// on the paper's unit costs (T_F = T_B = T_W, free transfers): each stage,
// whenever it is free, runs the first of
//
//  1. the input gradient (BackwardInput) of its oldest micro-batch whose
//     output gradient has arrived: it is on the critical path;
//  2. the next forward, if its input has arrived and stage i holds fewer
//     than 2(p-i)-1 micro-batches awaiting their input gradient and fewer
//     than 2p-1 awaiting their weight gradient;
//  3. its oldest pending weight gradient (BackwardWeight), which fills what
//     would otherwise be a bubble;
//
// and waits one unit when none can start. The extra warm-up forwards fill
// the start of the pipeline and the weight gradients its end, so with
// m >= 2p micro-batches no stage idles between its first and last compute
// (the paper's parallelogram). The order found is the schedule: Check
// proves it for any real costs.
func zbH2(p, m int) *Schedule {
	limB := func(i int) int { return 2*(p-i) - 1 }
	limW := 2*p - 1
	const never = -1.0
	fDone := make([][]float64, p) // when stage i's forward of micro j ended
	bDone := make([][]float64, p) // when stage i's input gradient of micro j ended
	for i := range fDone {
		fDone[i] = make([]float64, m)
		bDone[i] = make([]float64, m)
		for j := 0; j < m; j++ {
			fDone[i][j], bDone[i][j] = never, never
		}
	}
	type state struct{ f, b, w int } // next forward, input gradient, weight gradient
	st := make([]state, p)
	clock := make([]float64, p)
	comp := make([][]Action, p)
	ready := func(t float64) bool { return t != never }
	for {
		// the free stage with the earliest clock decides next; every
		// action that started earlier is already placed
		i := -1
		for k := 0; k < p; k++ {
			if st[k].w < m && (i < 0 || clock[k] < clock[i]) {
				i = k
			}
		}
		if i < 0 {
			break
		}
		t, s := clock[i], &st[i]
		var a Action
		switch {
		case s.b < s.f && (i == p-1 && ready(fDone[i][s.b]) && fDone[i][s.b] <= t ||
			i < p-1 && ready(bDone[i+1][s.b]) && bDone[i+1][s.b] <= t):
			a = Action{Kind: BackwardInput, Micro: s.b}
			s.b++
			bDone[i][a.Micro] = t + 1
		case s.f < m && s.f-s.b < limB(i) && s.f-s.w < limW &&
			(i == 0 || ready(fDone[i-1][s.f]) && fDone[i-1][s.f] <= t):
			a = Action{Kind: Forward, Micro: s.f}
			s.f++
			fDone[i][a.Micro] = t + 1
		case s.w < s.b:
			a = Action{Kind: BackwardWeight, Micro: s.w}
			s.w++
		default:
			// nothing can start: with unit costs every action starts and
			// ends on a whole time unit, so wait one
			clock[i] = t + 1
			if t > float64(4*m*p+4*p) {
				panic("pipeline: zero-bubble list scheduling is stuck") // cannot happen: the stage downstream always progresses
			}
			continue
		}
		comp[i] = append(comp[i], a)
		clock[i] = t + 1
	}
	return withTransfers(ZBH2, p, m, 1, comp)
}

// zbH1 is ZB-H1 as the paper draws it: 1F1B with each backward split, stage
// i warming up with min(p-i-1, m) forwards, then repeating forward, input
// gradient, and the weight gradient of the micro-batch i steps older, then
// draining input gradients with their weight gradients, then the weight
// gradients still owed. Delaying stage i's weight gradients by i lets the
// input gradients reach stage 0 without waiting for them, and the delayed
// ones fill the tail. Stage i holds at most min(p-i, m) micro-batches
// before their input gradient, as 1F1B, and min(p, m) before their weight
// gradient (only what W reads: zero-bubble's M_W), stage 0's 1F1B peak.
func zbH1(p, m int) *Schedule {
	comp := make([][]Action, p)
	for i := 0; i < p; i++ {
		warm := min(p-i-1, m)
		var acts []Action
		w := 0
		weight := func(upTo int) {
			for ; w <= upTo; w++ {
				acts = append(acts, Action{Kind: BackwardWeight, Micro: w})
			}
		}
		for f := 0; f < warm; f++ {
			acts = append(acts, Action{Kind: Forward, Micro: f})
		}
		for k := 0; k < m; k++ {
			if f := warm + k; f < m {
				acts = append(acts, Action{Kind: Forward, Micro: f})
			}
			acts = append(acts, Action{Kind: BackwardInput, Micro: k})
			weight(k - i)
		}
		weight(m - 1)
		comp[i] = acts
	}
	return withTransfers(ZBH1, p, m, 1, comp)
}
