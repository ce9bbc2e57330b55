package plot

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/strand-ml/strand/atomicfile"
)

// Series is one named curve; X and Y have equal length.
type Series struct {
	Name string
	X, Y []float64
}

// Image size of LossCurve's PNG.
const (
	width  = 8 * vg.Inch
	height = 5 * vg.Inch
)

// LossCurve writes a PNG line plot of series to path (atomically), with
// "step" on the x axis and "loss" on the y axis. Points with a NaN or
// infinite coordinate (a diverged step) are left out, so one bad step does
// not lose the plot. Series with no finite points are an error, as is a
// length mismatch.
func LossCurve(path string, title string, series []Series) error {
	return Curve(path, title, "step", "loss", series)
}

// Curve is LossCurve with chosen axis labels.
func Curve(path, title, xLabel, yLabel string, series []Series) error {
	p, err := build(title, xLabel, yLabel, series)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	wt, err := p.WriterTo(width, height, "png")
	if err != nil {
		return fmt.Errorf("plot %s: render: %w", path, err)
	}
	if err := atomicfile.Write(path, func(w io.Writer) error {
		_, err := wt.WriteTo(w)
		return err
	}); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

func build(title, xLabel, yLabel string, series []Series) (*gplot.Plot, error) {
	if len(series) == 0 {
		return nil, errors.New("no series to plot")
	}
	p := gplot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Add(plotter.NewGrid())
	p.Legend.Top = true // loss curves fall, so the top right is usually empty
	for i, s := range series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("series %q: %d x values but %d y values", s.Name, len(s.X), len(s.Y))
		}
		pts := make(plotter.XYs, 0, len(s.X))
		for k := range s.X {
			if finite(s.X[k]) && finite(s.Y[k]) {
				pts = append(pts, plotter.XY{X: s.X[k], Y: s.Y[k]})
			}
		}
		if len(pts) == 0 {
			return nil, fmt.Errorf("series %q has no finite points", s.Name)
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("series %q: %w", s.Name, err)
		}
		line.Color = seriesColor(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		if len(pts) == 1 { // a lone point draws no line; mark it
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return nil, fmt.Errorf("series %q: %w", s.Name, err)
			}
			sc.Color = line.Color
			p.Add(sc)
		}
		if s.Name != "" {
			p.Legend.Add(s.Name, line)
		}
	}
	return p, nil
}

func seriesColor(i int) color.Color { return plotutil.Color(i) }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// EMA returns the exponential moving average of y with smoothing factor
// alpha in (0, 1] (1 = no smoothing), bias-corrected like TensorBoard's
// smoothing so the start is not pulled toward zero. Non-finite values are
// passed through without updating the average.
func EMA(y []float64, alpha float64) []float64 {
	if !(alpha > 0 && alpha <= 1) {
		alpha = 1
	}
	out := make([]float64, len(y))
	var avg, weight float64
	for i, v := range y {
		if !finite(v) {
			out[i] = v
			continue
		}
		avg = (1-alpha)*avg + alpha*v
		weight = (1-alpha)*weight + alpha
		out[i] = avg / weight
	}
	return out
}
