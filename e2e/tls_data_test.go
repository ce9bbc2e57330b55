//go:build linux

package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread moved into network namespace ns (the
// thread is discarded afterwards): sockets fn creates belong to ns and
// keep working from any thread.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// sniffer records every frame on one interface of a namespace (AF_PACKET).
type sniffer struct {
	fd   int
	mu   sync.Mutex
	buf  bytes.Buffer
	stop chan struct{}
	done chan struct{}
}

const snifferCap = 96 << 20 // bytes of frames kept

func sniff(t *testing.T, ns, iface string) *sniffer {
	t.Helper()
	s := &sniffer{stop: make(chan struct{}), done: make(chan struct{})}
	const ethPAll = 0x0300 // htons(ETH_P_ALL)
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, ethPAll)
		if err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: ethPAll, Ifindex: ifi.Index}); err != nil {
			syscall.Close(fd)
			return err
		}
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<20)
		tv := syscall.Timeval{Usec: 200000}
		_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
		s.fd = fd
		return nil
	})
	if err != nil {
		t.Skipf("skipping: cannot capture packets in the namespace: %v", err)
	}
	go func() {
		defer close(s.done)
		defer syscall.Close(s.fd)
		frame := make([]byte, 65536)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			n, _, err := syscall.Recvfrom(s.fd, frame, 0)
			if err != nil || n <= 0 {
				continue
			}
			s.mu.Lock()
			if s.buf.Len() < snifferCap {
				s.buf.Write(frame[:n])
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sniffer) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// bytes stops the capture and returns what it saw.
func (s *sniffer) bytes() []byte {
	s.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Bytes()
}

// f32s is the wire form of float32 values (little-endian).
func f32s(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// payloadSeen reports whether the capture holds a run of a 2-rank `strand
// check` all-reduce's floats: rank 0 sends 1 + i%7, rank 1 2 + i%7, the
// sums are 3 + 2(i%7).
func payloadSeen(wire []byte) bool {
	for _, run := range [][]byte{f32s(1, 2, 3, 4), f32s(2, 3, 4, 5), f32s(3, 5, 7, 9)} {
		if bytes.Contains(wire, run) {
			return true
		}
	}
	return false
}

// jobHello reports whether the capture holds a strand hello other than
// the plaintext probe's (job id "probe").
func jobHello(wire []byte) bool {
	for i := 0; ; {
		j := bytes.Index(wire[i:], []byte("STRANDHS"))
		if j < 0 {
			return false
		}
		i += j
		if !bytes.HasPrefix(wire[i+46:], []byte("probe")) {
			return true
		}
		i += 8
	}
}

var listenRe = regexp.MustCompile(`"listen": "([0-9.]+:[0-9]+)"`)

// probePlaintext connects from namespace ns to addr, sends a strand hello
// in the clear and returns what the listener answered before closing.
func probePlaintext(t *testing.T, ns, addr string) []byte {
	t.Helper()
	var reply []byte
	err := inNetns(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		hello := append([]byte("STRANDHS"), make([]byte, 38)...)
		binary.LittleEndian.PutUint16(hello[8:], 2)  // version
		binary.LittleEndian.PutUint16(hello[10:], 1) // little-endian
		binary.LittleEndian.PutUint32(hello[12:], 1) // from rank 1
		binary.LittleEndian.PutUint32(hello[20:], 2) // world 2
		binary.LittleEndian.PutUint16(hello[26:], 2) // streams
		binary.LittleEndian.PutUint16(hello[44:], 5)
		hello = append(hello, "probe"...)
		if _, err := c.Write(hello); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		reply, err = io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fmt.Errorf("the data port kept a plaintext connection open for 15 s")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("plaintext probe of %s: %v", addr, err)
	}
	return reply
}

// checkAcross runs a 2-node x 1-worker `strand check` across the
// namespaces (the all-reduce crosses the veth link) with extra flags,
// sniffing node 1's link, probes node 0's data port in the clear while it
// runs, and returns the capture and the probe's answer.
func checkAcross(t *testing.T, h hosts, port string, extra ...string) (wire, reply []byte) {
	t.Helper()
	sn := sniff(t, h.nsB, h.vB)
	coord := ipA + ":" + port
	args := func(rank int) []string {
		a := []string{h.ipBin, "netns", "exec", h.nsA, strandBin, "check", "--nnodes", "2", "--node-rank", fmt.Sprint(rank),
			"--coordinator", coord, "--nproc-per-node", "1", "--token", "netns-tls-token-6f1c", "--connect-timeout", "30s", "--duration", "4s"}
		if rank == 1 {
			a[3] = h.nsB
		}
		return append(a, extra...)
	}
	a := start(t, nil, args(0)...)
	b := start(t, nil, args(1)...)
	var addr string
	for deadline := time.Now().Add(60 * time.Second); addr == ""; time.Sleep(50 * time.Millisecond) {
		if m := listenRe.FindStringSubmatch(a.out.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("node 0 never said where its data transport listens:\n%s", a.out)
		}
	}
	reply = probePlaintext(t, h.nsB, addr)
	ca, cb := a.wait(t, 90*time.Second), b.wait(t, 90*time.Second)
	if ca != 0 || cb != 0 || !strings.Contains(a.out.String(), "check passed: 2 ranks") {
		t.Fatalf("exit %d %d\nnode 0:\n%s\nnode 1:\n%s", ca, cb, a.out, b.out)
	}
	return sn.bytes(), reply
}

// TestTLSDataAcrossHosts: a 2-node job with --tls-auto across two network
// namespaces encrypts its data transport. A sniffer on the link between
// the "hosts" sees neither the strand handshake nor the all-reduce's
// floats (it does see them in the same job without TLS, which proves the
// sniffer would catch them), the data port drops a plaintext hello without
// an answer (the plain job's answers with a refusal), and a training run
// with --tls-auto across the namespaces trains.
func TestTLSDataAcrossHosts(t *testing.T) {
	h := twoHosts(t, "d")
	plainWire, plainReply := checkAcross(t, h, "29531")
	if !jobHello(plainWire) || !payloadSeen(plainWire) {
		t.Fatalf("the sniffer did not see the plain job's handshake and floats (%d bytes captured): it cannot judge the TLS job", len(plainWire))
	}
	if len(plainReply) < 2 || plainReply[0] != 1 || !bytes.Contains(plainReply, []byte("job id")) {
		t.Errorf("the plain job's data port answered a stranger's hello with %q, want a refusal naming the job id", plainReply)
	}

	wire, reply := checkAcross(t, h, "29532", "--tls-auto")
	if len(wire) < 64<<10 {
		t.Fatalf("only %d bytes captured on the TLS job's link", len(wire))
	}
	if jobHello(wire) || bytes.Contains(wire, []byte("netns-tls-token-6f1c")) || payloadSeen(wire) {
		t.Errorf("the TLS job's link carries the strand handshake (%v), the token (%v) or the all-reduce's floats (%v) in the clear",
			jobHello(wire), bytes.Contains(wire, []byte("netns-tls-token-6f1c")), payloadSeen(wire))
	}
	if !bytes.Contains(wire, []byte{0x17, 0x03, 0x03}) {
		t.Errorf("no TLS application data records on the TLS job's link")
	}
	if len(reply) > 0 && reply[0] != 0x15 { // nothing, or a TLS alert
		t.Errorf("the TLS job's data port answered a plaintext hello with %q", reply)
	}

	// and a --tls-auto training job across the namespaces trains, over TCP
	// with TLS even though both nodes could use RDMA (the software
	// provider): --transport auto does not trade the encryption away
	run := filepath.Join(t.TempDir(), "run")
	coord := ipA + ":29533"
	trainArgs := func(ns string, rank int) []string {
		return []string{h.ipBin, "netns", "exec", ns, strandBin, "train", "--out", run, "--nnodes", "2", "--node-rank", fmt.Sprint(rank),
			"--coordinator", coord, "--nproc-per-node", "1", "--token", "netns-tls-token-6f1c", "--connect-timeout", "30s", "--tls-auto",
			"--model", "tiny", "--batch", "4", "--seq", "32", "--steps", "20", "--max-data-bytes", "200000", "--no-progress", "--threads", "1",
			"--rdma-provider", "soft"}
	}
	sn := sniff(t, h.nsB, h.vB)
	a := start(t, nil, trainArgs(h.nsA, 0)...)
	b := start(t, nil, trainArgs(h.nsB, 1)...)
	ca, cb := a.wait(t, 3*time.Minute), b.wait(t, 3*time.Minute)
	if ca != 0 || cb != 0 {
		t.Fatalf("training over TLS: exit %d %d\nnode 0:\n%s\nnode 1:\n%s", ca, cb, a.out, b.out)
	}
	if !strings.Contains(a.out.String()+b.out.String(), "TLS to the ranks on other hosts") {
		t.Errorf("no rank says its data transport runs TLS:\n%s\n%s", a.out, b.out)
	}
	if !strings.Contains(a.out.String(), "use tcp with TLS, not rdma") {
		t.Errorf("node 0 does not say it chose TCP with TLS over RDMA:\n%s", a.out)
	}
	if w := sn.bytes(); jobHello(w) {
		t.Errorf("the training job's link carries the strand handshake in the clear")
	}
}
