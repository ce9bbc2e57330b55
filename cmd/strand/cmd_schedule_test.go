package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestScheduleCommand(t *testing.T) {
	png := filepath.Join(t.TempDir(), "s.png")
	var out, errb bytes.Buffer
	err := runSchedule(context.Background(), []string{"--pp", "2", "--microbatches", "4", "--schedule", "zb-h1", "--png", png}, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"schedule zb-h1: 2 stages, 4 micro-batches, theoretical bubble 7.7%",
		"stage 1 (max 2 in flight): recvA0 F0 Bi0 sendG0",
		"stage 1: 2 (at most 1 before their input gradient)",
		"makespan 13.00, simulated bubble 7.7% (theory 7.7%)",
		"needs an executor with a backward split",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("picture: %v", err)
	}
	out.Reset()
	err = runSchedule(context.Background(), []string{"--pp", "2", "--microbatches", "4", "--schedule", "interleaved", "--virtual-stages", "2", "--png", ""}, &out, &errb)
	if err != nil || !strings.Contains(out.String(), "F0c1") || !strings.Contains(out.String(), "makespan 13.50") {
		t.Fatalf("interleaved: %v\n%s", err, out.String())
	}
	err = runSchedule(context.Background(), []string{"--pp", "4", "--microbatches", "6", "--schedule", "interleaved", "--virtual-stages", "2"}, &out, &errb)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "multiple of the stages") {
		t.Fatalf("m not a multiple of p: %v", err)
	}
}
