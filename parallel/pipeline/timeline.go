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

// Slot is one compute action placed on a simulated clock.
type Slot struct {
	Stage      int
	Action     Action
	Start, End float64
}

// Timeline simulates the schedule with forward taking fwd time units and
// backward bwd units (transfers are free), each stage starting an action as
// soon as its program and its inputs allow. It returns the compute slots and
// the makespan — the picture of the schedule, and its ideal bubble.
func (s *Schedule) Timeline(fwd, bwd float64) ([]Slot, float64) {
	type key struct {
		kind  Kind
		from  int
		micro int
	}
	ready := map[key]float64{} // when a sent message is available
	clock := make([]float64, s.Stages)
	pc := make([]int, s.Stages)
	var slots []Slot
	for progress := true; progress; {
		progress = false
		for st := 0; st < s.Stages; st++ {
			for pc[st] < len(s.Steps[st]) {
				a := s.Steps[st][pc[st]]
				switch a.Kind {
				case Forward, Backward:
					d := fwd
					if a.Kind == Backward {
						d = bwd
					}
					slots = append(slots, Slot{st, a, clock[st], clock[st] + d})
					clock[st] += d
				case SendAct:
					ready[key{SendAct, st, a.Micro}] = clock[st]
				case SendGrad:
					ready[key{SendGrad, st, a.Micro}] = clock[st]
				case RecvAct, RecvGrad:
					from, kind := st-1, SendAct
					if a.Kind == RecvGrad {
						from, kind = st+1, SendGrad
					}
					t, ok := ready[key{kind, from, a.Micro}]
					if !ok {
						goto next
					}
					clock[st] = max(clock[st], t)
				}
				pc[st]++
				progress = true
			}
		next:
		}
	}
	var span float64
	for _, c := range clock {
		span = max(span, c)
	}
	return slots, span
}

// SimulatedBubble is the idle fraction of the simulated timeline.
func (s *Schedule) SimulatedBubble(fwd, bwd float64) float64 {
	_, span := s.Timeline(fwd, bwd)
	busy := float64(s.Micro) * (fwd + bwd)
	return 1 - busy/span
}

// WritePNG draws the schedule's timeline (forward 1 unit, backward 2):
// one row per stage, blue forwards and green backwards labelled with their
// micro-batch, so the bubble is visible at a glance.
func (s *Schedule) WritePNG(w io.Writer) error {
	slots, span := s.Timeline(1, 2)
	const unit, rowH, left, top = 28, 34, 70, 40
	W := left + int(span*unit) + 20
	H := top + s.Stages*rowH + 30
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	text := func(x, y int, str string, c color.Color) {
		d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(str)
	}
	text(10, 20, fmt.Sprintf("%s: %d stages x %d micro-batches, bubble %.0f%% (theory %.0f%%)", s.Name, s.Stages, s.Micro,
		100*s.SimulatedBubble(1, 2), 100*s.TheoreticalBubble()), color.Black)
	fwdC := color.RGBA{66, 133, 244, 255}
	bwdC := color.RGBA{52, 168, 83, 255}
	for st := 0; st < s.Stages; st++ {
		y := top + st*rowH
		text(8, y+rowH/2+4, fmt.Sprintf("stage %d", st), color.Black)
		draw.Draw(img, image.Rect(left, y+rowH-3, left+int(span*unit), y+rowH-2), image.NewUniform(color.Gray{200}), image.Point{}, draw.Src)
	}
	for _, sl := range slots {
		c := fwdC
		if sl.Action.Kind == Backward {
			c = bwdC
		}
		x0, x1 := left+int(sl.Start*unit)+1, left+int(sl.End*unit)-1
		y0 := top + sl.Stage*rowH + 2
		draw.Draw(img, image.Rect(x0, y0, x1, y0+rowH-8), image.NewUniform(c), image.Point{}, draw.Src)
		text(x0+4, y0+rowH/2+1, fmt.Sprintf("%s%d", sl.Action.Kind, sl.Action.Micro), color.White)
	}
	text(left, H-10, "time (forward = 1, backward = 2 units)  blue: forward  green: backward", color.Black)
	return png.Encode(w, img)
}
