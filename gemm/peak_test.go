package gemm

import (
	"context"
	"testing"
	"time"
)

func TestPeakGFLOPS(t *testing.T) {
	peak, err := PeakGFLOPS(context.Background(), 1, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Any CPU that runs these tests does more than 0.5 GFLOP/s on one core;
	// none does more than 2000 (about 10 times the AVX-512 peak).
	if peak < 0.5 || peak > 2000 {
		t.Fatalf("peak %.1f GFLOP/s out of range", peak)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := PeakGFLOPS(ctx, 2, time.Second); err == nil {
		t.Fatal("cancelled context not reported")
	}
	if _, err := PeakGFLOPS(context.Background(), 1, 0); err == nil {
		t.Fatal("zero duration accepted")
	}
}
