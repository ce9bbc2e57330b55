package progress

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the master and slave ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestAutoDetectsTerminal: on a real (pseudo-)terminal Auto mode redraws in
// place with \r; on a regular file it prints plain lines.
func TestAutoDetectsTerminal(t *testing.T) {
	master, slave := openPTY(t)
	clk := newClock()
	b := New(slave, 10, Options{Now: clk.now})
	if !b.term {
		t.Fatal("a pseudo-terminal was not detected as a terminal")
	}
	b.Update(1, Stats{Loss: 2})
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := master.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, "\r 1/10 [") {
		t.Fatalf("terminal output %q", got)
	}

	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pb := New(f, 10, Options{Now: clk.now})
	pb.Update(1, Stats{Loss: 2})
	pb.Finish()
	got, _ := os.ReadFile(f.Name())
	if bytes.ContainsAny(got, "\r\x1b") || !strings.HasPrefix(string(got), " 1/10  10% loss 2.0000") {
		t.Fatalf("file output %q", got)
	}
}
