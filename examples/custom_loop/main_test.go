package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCustomLoopGoRun runs the example the way its comment says, with go
// run and no environment: the launcher finds the binary go run built.
func TestCustomLoopGoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-process job")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "run", ".", "-launch", "4", "-tp", "2", "-steps", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "[rank 0] step   1  loss ") {
		t.Fatalf("no loss line from rank 0:\n%s", out)
	}
}
