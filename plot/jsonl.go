package plot

import (
	"fmt"

	"github.com/strand-ml/strand/metrics"
)

// LossCurveFromJSONL plots a training run's metrics file (as written by
// metrics.JSONL, one record per step) to pngPath: "loss" against "step" as
// the train curve, an EMA-smoothed copy when there are enough points to be
// noisy, and "val_loss" against "step" from the records that have it.
func LossCurveFromJSONL(pngPath, jsonlPath, title string) error {
	recs, err := metrics.ReadJSONL(jsonlPath)
	if err != nil {
		return fmt.Errorf("plot %s: %w", pngPath, err)
	}
	x, y := metrics.Series(recs, "step", "loss")
	if len(x) == 0 {
		return fmt.Errorf("plot %s: %s has no records with both \"step\" and \"loss\"", pngPath, jsonlPath)
	}
	series := []Series{{Name: "train", X: x, Y: y}}
	if len(x) >= 50 {
		series = append(series, Series{Name: "train (EMA 0.05)", X: x, Y: EMA(y, 0.05)})
	}
	if vx, vy := metrics.Series(recs, "step", "val_loss"); len(vx) > 0 {
		series = append(series, Series{Name: "validation", X: vx, Y: vy})
	}
	return LossCurve(pngPath, title, series)
}
