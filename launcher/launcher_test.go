package launcher

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/mesh"
)

// The test binary doubles as the worker: with LAUNCHER_TEST_CHILD set it
// acts out the behaviour named there instead of running tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("LAUNCHER_TEST_CHILD"); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

func child(mode string) int {
	job, ok, err := jobenv.Detect(os.Getenv)
	if !ok || err != nil {
		fmt.Fprintln(os.Stderr, "no job environment:", err)
		return 9
	}
	fmt.Printf("hello from rank %d of %d mesh %d,%d,%d token=%v\n", job.Rank, job.World, job.DP, job.TP, job.PP, job.Token != "")
	fmt.Fprintf(os.Stderr, "partial line without newline")
	switch mode {
	case "ok":
		return 0
	case "rank1fails":
		if job.Rank == 1 {
			time.Sleep(100 * time.Millisecond)
			return 3
		}
		time.Sleep(30 * time.Second)
		return 0
	case "sleep":
		time.Sleep(30 * time.Second)
		return 0
	}
	return 8
}

func localCfg(n int, mode string, stdout, stderr *bytes.Buffer) LocalConfig {
	return LocalConfig{
		NProc: n, Args: []string{"-test.run=^$"}, Stdout: stdout, Stderr: stderr,
		Common: Common{Executable: os.Args[0], Env: []string{"LAUNCHER_TEST_CHILD=" + mode}, KillGrace: 2 * time.Second},
	}
}

func TestLocalPrefixesOutputAndSucceeds(t *testing.T) {
	var out, errb bytes.Buffer
	cfg := localCfg(3, "ok", &out, &errb)
	if err := Local(context.Background(), cfg); err != nil {
		t.Fatalf("Local: %v\nstderr:\n%s", err, errb.String())
	}
	for r := 0; r < 3; r++ {
		want := fmt.Sprintf("[rank %d] hello from rank %d of 3 mesh 3,1,1 token=true\n", r, r)
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out.String())
		}
		if !strings.Contains(errb.String(), fmt.Sprintf("[rank %d] partial line without newline\n", r)) {
			t.Errorf("stderr lacks rank %d's partial line:\n%s", r, errb.String())
		}
	}
}

// TestCoordinatorLogsByDefault: with no Log given (as strand train
// launches), the launcher's and coordinator's log goes to Stderr in the
// workers' format, each line prefixed "[coordinator] " (under json a
// "component":"coordinator" key, so every line stays JSON).
func TestCoordinatorLogsByDefault(t *testing.T) {
	for _, format := range []string{"console", "json"} {
		var out, errb bytes.Buffer
		cfg := localCfg(2, "ok", &out, &errb)
		cfg.LogFormat = format
		if err := Local(context.Background(), cfg); err != nil {
			t.Fatalf("Local: %v\nstderr:\n%s", err, errb.String())
		}
		for _, want := range []string{"coordinator listening", "workers started"} {
			found := false
			for _, line := range strings.Split(errb.String(), "\n") {
				tagged := strings.HasPrefix(line, "[coordinator] ")
				if format == "json" {
					tagged = strings.HasPrefix(line, `{"component":"coordinator",`)
				}
				if tagged && strings.Contains(line, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no [coordinator] line with %q in stderr:\n%s", format, want, errb.String())
			}
		}
		if format == "json" && !strings.Contains(errb.String(), `{"component":"coordinator","level":"info"`) {
			t.Errorf("json: coordinator lines are not JSON:\n%s", errb.String())
		}
	}
}

func TestLocalFirstFailureTearsDownAll(t *testing.T) {
	var out, errb bytes.Buffer
	start := time.Now()
	err := Local(context.Background(), localCfg(3, "rank1fails", &out, &errb))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Rank != 1 || ee.ExitCode() != 3 {
		t.Fatalf("err = %v, want rank 1 exit 3", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("teardown took %v", el)
	}
}

func TestLocalInterruptForwardsSignal(t *testing.T) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(500 * time.Millisecond); cancel() }()
	start := time.Now()
	err := Local(ctx, localCfg(2, "sleep", &out, &errb))
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("interrupt took %v", el)
	}
}

func TestLocalRejectsBadMesh(t *testing.T) {
	cfg := localCfg(4, "ok", &bytes.Buffer{}, &bytes.Buffer{})
	cfg.Mesh = mesh.Mesh{DP: 1, TP: 2, PP: 1}
	if err := Local(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "has 2 ranks but --nproc is 4") {
		t.Fatalf("err = %v", err)
	}
}

func TestFlags(t *testing.T) {
	cases := []struct {
		args    []string
		world   int
		mesh    mesh.Mesh
		wantErr string
	}{
		{args: []string{"--nproc", "4"}, world: 4, mesh: mesh.Mesh{DP: 4, TP: 1, PP: 1}},
		{args: []string{"--nproc", "8", "--tp", "2", "--pp", "2"}, world: 8, mesh: mesh.Mesh{DP: 2, TP: 2, PP: 2}},
		{args: []string{"--nnodes", "2", "--node-rank", "1", "--coordinator", "h:1", "--nproc-per-node", "2"}, world: 4, mesh: mesh.Mesh{DP: 4, TP: 1, PP: 1}},
		{args: []string{"--nproc", "4", "--tp", "3"}, wantErr: "does not divide"},
		{args: []string{"--nnodes", "2", "--nproc-per-node", "2"}, wantErr: "--coordinator"},
		{args: []string{"--nnodes", "2", "--coordinator", "h:1", "--nproc-per-node", "2", "--node-rank", "2"}, wantErr: "outside"},
		{args: []string{"--nproc", "2", "--transport", "udp"}, wantErr: "want auto, shm, tcp or rdma"},
		{args: []string{"--nnodes", "2", "--coordinator", "h:1", "--nproc-per-node", "2", "--min-nodes", "1"}, world: 4, mesh: mesh.Mesh{DP: 4, TP: 1, PP: 1}},
		{args: []string{"--nnodes", "2", "--coordinator", "h:1", "--nproc-per-node", "2", "--min-nodes", "3"}, wantErr: "--min-nodes 3 outside"},
		{args: []string{"--nnodes", "2", "--coordinator", "h:1", "--nproc-per-node", "2", "--rejoin-timeout", "-1s"}, wantErr: "--rejoin-timeout"},
	}
	for _, tc := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := f.Validate()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err = %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		m, _ := f.Mesh(f.World())
		if f.World() != tc.world || m != tc.mesh {
			t.Errorf("%v: world %d mesh %v", tc.args, f.World(), m)
		}
	}
}

func TestExitErrorMessage(t *testing.T) {
	e := &ExitError{Rank: 2, Code: 137, Signal: "killed", Reason: "rank 2 died"}
	if !strings.Contains(e.Error(), "rank 2 was killed by signal killed") || e.ExitCode() != 137 {
		t.Fatal(e.Error())
	}
}

// TestMultiNodeWithoutTLSWarns: a node of a multi-node job without TLS
// says loudly that the token crosses the network in the clear; with a CA
// it does not.
func TestMultiNodeWithoutTLSWarns(t *testing.T) {
	for _, ca := range []string{"", "/some/ca.pem"} {
		var out, errb bytes.Buffer
		cfg := NodeConfig{NNodes: 2, NodeRank: 1, Coordinator: "127.0.0.1:1", NProcPerNode: 1, Mesh: mesh.Mesh{DP: 2, TP: 1, PP: 1},
			Args: []string{"-test.run=^$"}, Stdout: &out, Stderr: &errb,
			Common: Common{Executable: os.Args[0], Env: []string{"LAUNCHER_TEST_CHILD=ok"}, Token: "t", TLSCA: ca, KillGrace: 2 * time.Second}}
		if err := Node(context.Background(), cfg); err != nil {
			t.Fatalf("Node: %v\n%s", err, errb.String())
		}
		warned := strings.Contains(errb.String(), "[coordinator] ") && strings.Contains(errb.String(), "NO TLS")
		if warned != (ca == "") {
			t.Errorf("TLS CA %q: warned %v; stderr:\n%s", ca, warned, errb.String())
		}
	}
}

// A worker is the cause of a failure when it died of a SIGKILL the
// launcher did not send, even if the teardown had signalled it (SIGTERM)
// before its exit was reaped; the launcher's own SIGKILL (after the grace)
// and SIGTERM deaths are not.
func TestKilledElsewhere(t *testing.T) {
	for _, c := range []struct {
		sig      string
		sentKill bool
		want     bool
	}{
		{syscall.SIGKILL.String(), false, true},
		{syscall.SIGKILL.String(), true, false},
		{syscall.SIGTERM.String(), false, false},
		{"", false, false},
	} {
		p := &proc{sig: c.sig, terminated: true}
		if got := p.killedElsewhere(c.sentKill); got != c.want {
			t.Errorf("died of %q, launcher sent SIGKILL %v: killed elsewhere %v, want %v", c.sig, c.sentKill, got, c.want)
		}
	}
}
