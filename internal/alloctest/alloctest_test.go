package alloctest

import "testing"

var sink []byte

// TestPerCallSeesOneAllocation: a call that allocates once measures 1 (at
// least Tolerance), one that allocates every other call measures 0.5 (at
// least Tolerance) and one that allocates nothing measures below it.
func TestPerCallSeesOneAllocation(t *testing.T) {
	if a := PerCall(2, 50, 3, func() { sink = make([]byte, 64) }); a < 1 {
		t.Errorf("a call that allocates once measured %.3f per call, want >= 1", a)
	}
	n := 0
	every2 := func() {
		if n++; n%2 == 0 {
			sink = make([]byte, 64)
		}
	}
	if a := PerCall(2, 50, 3, every2); a < Tolerance {
		t.Errorf("a call that allocates every other call measured %.3f per call, below the tolerance %.2f", a, Tolerance)
	}
	buf := make([]byte, 64)
	if a := PerCall(2, 50, 3, func() { buf[0]++ }); a >= Tolerance {
		t.Errorf("a call that allocates nothing measured %.3f per call", a)
	}
}
