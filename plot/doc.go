// Package plot draws loss curves as PNG files (e.g. DIR/loss.png after
// `strand train`), using gonum.org/v1/plot: one line per series with axes,
// labels, a grid and a legend.
package plot
