package pipeline

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Costs is the cost model of a schedule: a whole stage's time per
// micro-batch for the forward (F), the input gradient (B) and the weight
// gradient (W), in any unit. A fused Backward takes B+W; with V chunks per
// stage a chunk's action takes 1/V of its stage's. Send is the latency from
// a send to its message being receivable (the send itself is asynchronous
// and costs its stage nothing).
type Costs struct {
	F, B, W float64
	Send    float64
}

// UnitCosts are the zero-bubble paper's T_F = T_B = T_W = 1 with free
// transfers (Backward = 2 forwards, as in the Megatron papers).
var UnitCosts = Costs{F: 1, B: 1, W: 1}

// Validate refuses negative times and a model where nothing costs anything.
func (c Costs) Validate() error {
	if c.F < 0 || c.B < 0 || c.W < 0 || c.Send < 0 {
		return fmt.Errorf("pipeline costs F=%g B=%g W=%g send=%g must not be negative", c.F, c.B, c.W, c.Send)
	}
	if c.F+c.B+c.W == 0 {
		return fmt.Errorf("pipeline costs F=%g B=%g W=%g: no compute takes any time", c.F, c.B, c.W)
	}
	return nil
}

// duration of compute kind k for one chunk of v per stage.
func (c Costs) duration(k Kind, v int) float64 {
	var d float64
	switch k {
	case Forward:
		d = c.F
	case Backward:
		d = c.B + c.W
	case BackwardInput:
		d = c.B
	case BackwardWeight:
		d = c.W
	}
	return d / float64(v)
}

// Slot is one compute action placed on a simulated clock.
type Slot struct {
	Stage      int
	Action     Action
	Start, End float64
}

// Sim is a schedule run on the cost model.
type Sim struct {
	Slots    []Slot
	Makespan float64   // end of the step: the last stage's last action
	Busy     []float64 // per stage: compute time
	First    []float64 // per stage: start of its first compute
	Last     []float64 // per stage: end of its last compute
}

// Bubble is the idle fraction of the step: 1 - mean compute / makespan,
// the quantity TheoreticalBubble predicts (every stage computes the same).
func (r *Sim) Bubble() float64 {
	var busy float64
	for _, b := range r.Busy {
		busy += b
	}
	return 1 - busy/float64(len(r.Busy))/r.Makespan
}

// WindowIdle is stage's idle time between its first and last compute over
// the makespan: the bubble a rank sees inside its own step (what a
// measurement of one rank's compute gaps reports).
func (r *Sim) WindowIdle(stage int) float64 {
	return (r.Last[stage] - r.First[stage] - r.Busy[stage]) / r.Makespan
}

// Simulate runs the schedule on the cost model: each stage starts an action
// as soon as its program and its inputs allow, a receive waiting for its
// message (Send after the matching send). It fails on a program Check
// would reject for a deadlock.
func (s *Schedule) Simulate(c Costs) (*Sim, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p, v := s.Stages, s.Chunks()
	arrive := map[message]float64{} // when a sent message can be received
	clock := make([]float64, p)
	pc := make([]int, p)
	r := &Sim{Busy: make([]float64, p), First: make([]float64, p), Last: make([]float64, p)}
	started := make([]bool, p)
	for progress := true; progress; {
		progress = false
		for st := 0; st < p; st++ {
			for pc[st] < len(s.Steps[st]) {
				a := s.Steps[st][pc[st]]
				g := s.Global(st, a.Chunk)
				switch a.Kind {
				case SendAct, SendGrad:
					arrive[message{a.Kind, a.Micro, g}] = clock[st] + c.Send
				case RecvAct, RecvGrad:
					want := message{SendAct, a.Micro, g - 1}
					if a.Kind == RecvGrad {
						want = message{SendGrad, a.Micro, g + 1}
					}
					t, ok := arrive[want]
					if !ok {
						goto next
					}
					clock[st] = max(clock[st], t)
				default:
					d := c.duration(a.Kind, v)
					if !started[st] {
						started[st], r.First[st] = true, clock[st]
					}
					r.Slots = append(r.Slots, Slot{st, a, clock[st], clock[st] + d})
					clock[st] += d
					r.Busy[st] += d
					r.Last[st] = clock[st]
				}
				pc[st]++
				progress = true
			}
		next:
		}
	}
	for st := 0; st < p; st++ {
		if pc[st] < len(s.Steps[st]) {
			return nil, fmt.Errorf("stage %d cannot run past step %d %s", st, pc[st], s.Steps[st][pc[st]])
		}
		r.Makespan = max(r.Makespan, clock[st])
	}
	return r, nil
}

// WritePNG draws the schedule's timeline on the cost model c: one row per
// stage, forwards blue, backwards green, input gradients teal and weight
// gradients orange (lighter for higher chunks), labelled with their
// micro-batch, so the bubble is visible at a glance.
func (s *Schedule) WritePNG(w io.Writer, c Costs) error {
	sim, err := s.Simulate(c)
	if err != nil {
		return err
	}
	v := s.Chunks()
	// a chunk's unit-cost action is about 28 pixels wide
	base := c.F
	if base <= 0 {
		base = max(c.B, c.W)
	}
	unit := 28 * float64(v) / base
	const rowH, left, top = 34, 70, 40
	span := sim.Makespan
	W := left + int(span*unit) + 20
	H := top + s.Stages*rowH + 30
	if W > 30000 {
		return fmt.Errorf("timeline of %.0f units is too wide to draw", span)
	}
	legend := fmt.Sprintf("time (F=%g B=%g W=%g send=%g)  blue: forward  green: backward  teal: input grad  orange: weight grad", c.F, c.B, c.W, c.Send)
	if v > 1 {
		legend += "  lighter: later chunk"
	}
	W = max(W, left+7*len(legend)+20)
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	text := func(x, y int, str string, col color.Color) {
		d := &font.Drawer{Dst: img, Src: image.NewUniform(col), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(str)
	}
	title := fmt.Sprintf("%s: %d stages x %d micro-batches", s.Name, s.Stages, s.Micro)
	if v > 1 {
		title += fmt.Sprintf(", %d chunks per stage", v)
	}
	text(10, 20, fmt.Sprintf("%s, bubble %.1f%% (theory %.1f%%)", title, 100*sim.Bubble(), 100*s.TheoreticalBubble()), color.Black)
	colors := map[Kind]color.RGBA{
		Forward:        {66, 133, 244, 255},
		Backward:       {52, 168, 83, 255},
		BackwardInput:  {0, 137, 123, 255},
		BackwardWeight: {230, 124, 17, 255},
	}
	for st := 0; st < s.Stages; st++ {
		y := top + st*rowH
		text(8, y+rowH/2+4, fmt.Sprintf("stage %d", st), color.Black)
		draw.Draw(img, image.Rect(left, y+rowH-3, left+int(span*unit), y+rowH-2), image.NewUniform(color.Gray{200}), image.Point{}, draw.Src)
	}
	for _, sl := range sim.Slots {
		col, label := colors[sl.Action.Kind], color.Color(color.White)
		if v > 1 { // lighten higher chunks
			f := 0.55 * float64(sl.Action.Chunk) / float64(v-1)
			if f > 0.3 {
				label = color.Black
			}
			col.R += uint8(f * float64(255-col.R))
			col.G += uint8(f * float64(255-col.G))
			col.B += uint8(f * float64(255-col.B))
		}
		x0, x1 := left+int(sl.Start*unit)+1, left+int(sl.End*unit)-1
		if x1 <= x0 {
			continue
		}
		y0 := top + sl.Stage*rowH + 2
		draw.Draw(img, image.Rect(x0, y0, x1, y0+rowH-8), image.NewUniform(col), image.Point{}, draw.Src)
		text(x0+3, y0+rowH/2+1, fmt.Sprintf("%s%d", sl.Action.Kind, sl.Action.Micro), label)
	}
	text(left, H-10, legend, color.Black)
	return png.Encode(w, img)
}
