package plot

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLossCurvePNG(t *testing.T) {
	dir := t.TempDir()
	if d := os.Getenv("STRAND_PLOT_DIR"); d != "" {
		dir = d // keep the image to look at
	}
	var x, train, val, vx []float64
	for i := 0; i < 200; i++ {
		x = append(x, float64(i+1))
		train = append(train, 2+8*math.Exp(-float64(i)/40)+0.3*math.Sin(float64(i)))
		if i%20 == 19 {
			vx = append(vx, float64(i+1))
			val = append(val, 2.3+8*math.Exp(-float64(i)/40))
		}
	}
	train[50] = math.NaN() // a diverged step must not break the plot
	p := filepath.Join(dir, "loss.png")
	err := LossCurve(p, "tiny on Go sources", []Series{
		{Name: "train", X: x, Y: train},
		{Name: "train (EMA 0.1)", X: x, Y: EMA(train, 0.1)},
		{Name: "validation", X: vx, Y: val},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w < 500 || h < 300 {
		t.Fatalf("image %dx%d too small", w, h)
	}
	// Something other than the white background was drawn: count colored
	// pixels (the series lines), not just gray axes/text.
	colored := 0
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if max(r, g, b)-min(r, g, b) > 0x4000 {
				colored++
			}
		}
	}
	if colored < 1000 {
		t.Fatalf("only %d colored pixels; the curves are missing", colored)
	}
}

func TestLossCurveErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.png")
	cases := map[string][]Series{
		"no series":    nil,
		"no finite":    {{Name: "a", X: []float64{1}, Y: []float64{math.Inf(1)}}},
		"x values but": {{Name: "a", X: []float64{1, 2}, Y: []float64{1}}},
	}
	for want, s := range cases {
		if err := LossCurve(p, "t", s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err %v, want %q", s, err, want)
		}
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("failed plot left a file")
	}
	if err := LossCurve(filepath.Join(t.TempDir(), "missing", "x.png"), "t", []Series{{X: []float64{1}, Y: []float64{1}}}); err == nil {
		t.Fatal("unwritable path accepted")
	}
}

func TestEMA(t *testing.T) {
	got := EMA([]float64{4, 4, 4}, 0.5)
	for _, v := range got {
		if v != 4 {
			t.Fatalf("EMA of a constant = %v", got)
		}
	}
	got = EMA([]float64{0, 2, math.NaN(), 2}, 0.5)
	// avg: 0 -> 1 (w .75) -> NaN passthrough -> 1.5 (w .875)
	if got[0] != 0 || math.Abs(got[1]-1/0.75) > 1e-12 || !math.IsNaN(got[2]) || math.Abs(got[3]-1.5/0.875) > 1e-12 {
		t.Fatalf("EMA = %v", got)
	}
}
