//go:build race

package gemm

// raceEnabled: the race detector slows element loops tenfold; tests skip
// their largest cases under it.
const raceEnabled = true
