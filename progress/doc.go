// Package progress draws the training progress line: step/total, a bar,
// loss, tokens/s, MFU and the estimated time left.
//
// On a terminal the line is redrawn in place ("\r" plus erase-to-end) at
// most every Options.Interval; into a file or pipe (CI logs, `tee`) it
// prints a plain line every Options.Every steps instead, so logs stay
// readable. The clock is injectable so rendering is tested exactly.
package progress
