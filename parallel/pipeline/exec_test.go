package pipeline

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

// A toy model that runs every schedule through Run the way doc.go's
// executor contract says, over in-memory ordered channels between stages,
// and must reproduce the gradients of a plain sequential pass bit for bit.
// Global chunk g maps a vector x to tanh(w[g]*x + b[g]); the loss of a
// micro-batch is sum(y^2)/2 of the last chunk's output.

const toyWidth = 3

type toyMsg struct {
	kind  Kind // SendAct or SendGrad
	micro int
	from  int // global chunk of the sender
	data  []float64
}

type toyModel struct {
	w, b []float64   // per global chunk
	in   [][]float64 // per micro-batch input
}

func newToy(chunks, micro int) *toyModel {
	t := &toyModel{w: make([]float64, chunks), b: make([]float64, chunks)}
	for g := range t.w {
		t.w[g] = 0.9 - 0.07*float64(g)
		t.b[g] = 0.05 * float64(g%3)
	}
	for m := 0; m < micro; m++ {
		x := make([]float64, toyWidth)
		for i := range x {
			x[i] = math.Sin(float64(1 + m*toyWidth + i))
		}
		t.in = append(t.in, x)
	}
	return t
}

// reference: each micro-batch forward and backward through every chunk in
// turn; weight gradients summed in micro-batch order.
func (t *toyModel) reference() (dw, db []float64) {
	n := len(t.w)
	dw, db = make([]float64, n), make([]float64, n)
	for _, x0 := range t.in {
		xs := [][]float64{x0}
		for g := 0; g < n; g++ {
			xs = append(xs, toyForward(t.w[g], t.b[g], xs[g]))
		}
		dy := append([]float64(nil), xs[n]...) // d(sum y^2 / 2)/dy = y
		for g := n - 1; g >= 0; g-- {
			dz := toyDZ(xs[g+1], dy)
			gw, gb := toyWeightGrad(xs[g], dz)
			dw[g] += gw
			db[g] += gb
			dy = toyInputGrad(t.w[g], dz)
		}
	}
	return dw, db
}

func toyForward(w, b float64, x []float64) []float64 {
	y := make([]float64, len(x))
	for i := range x {
		y[i] = math.Tanh(w*x[i] + b)
	}
	return y
}

func toyDZ(y, dy []float64) []float64 {
	dz := make([]float64, len(y))
	for i := range y {
		dz[i] = dy[i] * (1 - y[i]*y[i])
	}
	return dz
}

func toyWeightGrad(x, dz []float64) (gw, gb float64) {
	for i := range x {
		gw += dz[i] * x[i]
		gb += dz[i]
	}
	return gw, gb
}

func toyInputGrad(w float64, dz []float64) []float64 {
	dx := make([]float64, len(dz))
	for i := range dz {
		dx[i] = w * dz[i]
	}
	return dx
}

// toyStage executes one stage's actions per the executor contract.
type toyStage struct {
	s      *Schedule
	rank   int
	model  *toyModel
	out    []chan toyMsg // out[peer]: ordered channel to that stage
	in     []chan toyMsg // in[peer]: ordered channel from that stage
	slots  map[[2]int]int
	x, y   [][]float64 // per activation slot: chunk input and output
	dz     [][]float64 // per slot: kept by BackwardInput for BackwardWeight
	live   []bool
	dy     []float64 // last received output gradient
	dx     [][]float64
	dw, db []float64 // per local chunk
}

func (e *toyStage) Do(ctx context.Context, a Action) error {
	p := e.s.Stages
	g := e.s.Global(e.rank, a.Chunk)
	last := p*e.s.Chunks() - 1
	k := [2]int{a.Micro, a.Chunk}
	slot := e.slots[k]
	recv := func(from int, want toyMsg) ([]float64, error) {
		select {
		case msg := <-e.in[from]:
			if msg.kind != want.kind || msg.micro != want.micro || msg.from != want.from {
				return nil, fmt.Errorf("%s got %s%d from chunk %d", a, msg.kind, msg.micro, msg.from)
			}
			return msg.data, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	switch a.Kind {
	case RecvAct:
		d, err := recv((g-1)%p, toyMsg{kind: SendAct, micro: a.Micro, from: g - 1})
		if err != nil {
			return err
		}
		e.x[slot] = d
	case Forward:
		if e.live[slot] {
			return fmt.Errorf("%s: slot %d still live", a, slot)
		}
		e.live[slot] = true
		if g == 0 {
			e.x[slot] = e.model.in[a.Micro]
		}
		e.y[slot] = toyForward(e.model.w[g], e.model.b[g], e.x[slot])
	case SendAct:
		e.out[(g+1)%p] <- toyMsg{SendAct, a.Micro, g, e.y[slot]}
	case RecvGrad:
		d, err := recv((g+1)%p, toyMsg{kind: SendGrad, micro: a.Micro, from: g + 1})
		if err != nil {
			return err
		}
		e.dy = d
	case Backward, BackwardInput:
		dy := e.dy
		if g == last {
			dy = e.y[slot]
		}
		e.dz[slot] = toyDZ(e.y[slot], dy)
		e.dx[slot] = toyInputGrad(e.model.w[g], e.dz[slot])
		if a.Kind == Backward {
			e.weight(slot, a.Chunk)
		}
	case BackwardWeight:
		e.weight(slot, a.Chunk)
	case SendGrad:
		e.out[(g-1)%p] <- toyMsg{SendGrad, a.Micro, g, e.dx[slot]}
	}
	return nil
}

func (e *toyStage) weight(slot, chunk int) {
	gw, gb := toyWeightGrad(e.x[slot], e.dz[slot])
	e.dw[chunk] += gw
	e.db[chunk] += gb
	e.live[slot] = false
}

func TestRunExecutesEveryScheduleExactly(t *testing.T) {
	specs := []Spec{
		{Name: GPipe, Stages: 3, Micro: 4},
		{Name: OneFOneB, Stages: 4, Micro: 6},
		{Name: Interleaved, Stages: 2, Micro: 4, Virtual: 2},
		{Name: Interleaved, Stages: 2, Micro: 2, Virtual: 4},
		{Name: Interleaved, Stages: 3, Micro: 6, Virtual: 3},
		{Name: Interleaved, Stages: 4, Micro: 8, Virtual: 2},
		{Name: ZBH1, Stages: 2, Micro: 4},
		{Name: ZBH1, Stages: 4, Micro: 3},
		{Name: ZBH2, Stages: 3, Micro: 8},
		{Name: ZBH2, Stages: 4, Micro: 5},
	}
	for _, spec := range specs {
		t.Run(fmt.Sprintf("%s p%d m%d v%d", spec.Name, spec.Stages, spec.Micro, spec.Virtual), func(t *testing.T) {
			s, err := Generate(spec)
			if err != nil {
				t.Fatal(err)
			}
			p, v := s.Stages, s.Chunks()
			model := newToy(p*v, s.Micro)
			chans := make([][]chan toyMsg, p) // chans[from][to]
			for i := range chans {
				chans[i] = make([]chan toyMsg, p)
				for j := range chans[i] {
					chans[i][j] = make(chan toyMsg, 4*s.Micro*v) // sends never block
				}
			}
			stages := make([]*toyStage, p)
			for r := 0; r < p; r++ {
				n := s.InFlight(r)
				e := &toyStage{s: s, rank: r, model: model, slots: s.Slots(r),
					x: make([][]float64, n), y: make([][]float64, n), dz: make([][]float64, n), dx: make([][]float64, n),
					live: make([]bool, n), dw: make([]float64, v), db: make([]float64, v)}
				for peer := 0; peer < p; peer++ {
					e.out = append(e.out, chans[r][peer])
					e.in = append(e.in, chans[peer][r])
				}
				stages[r] = e
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs := make([]error, p)
			var wg sync.WaitGroup
			for r := 0; r < p; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if errs[r] = Run(ctx, s, r, stages[r]); errs[r] != nil {
						cancel()
					}
				}()
			}
			wg.Wait()
			for r, err := range errs {
				if err != nil {
					t.Fatalf("stage %d: %v", r, err)
				}
			}
			dw, db := model.reference()
			for r, e := range stages {
				for c := 0; c < v; c++ {
					g := s.Global(r, c)
					if e.dw[c] != dw[g] || e.db[c] != db[g] {
						t.Errorf("chunk %d on stage %d: dw %v db %v, sequential %v %v", g, r, e.dw[c], e.db[c], dw[g], db[g])
					}
				}
			}
		})
	}
}
