package tcp

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestReadableSeesPendingBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	acc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	fd := socketFD(acc.(*net.TCPConn))
	if fd < 0 {
		t.Fatal("no descriptor for a TCP socket")
	}
	if readable(fd) {
		t.Fatal("an idle socket reads as readable")
	}
	if _, err := dialed.Write([]byte{42}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !readable(fd) {
		if time.Now().After(deadline) {
			t.Fatal("a socket with a pending byte never reads as readable")
		}
		time.Sleep(time.Millisecond)
	}
	var b [1]byte
	if _, err := io.ReadFull(acc, b[:]); err != nil || b[0] != 42 {
		t.Fatalf("read %v, %v", b, err)
	}
	if readable(fd) {
		t.Fatal("a drained socket reads as readable")
	}
	if !readable(-1) {
		t.Fatal("an unknown descriptor must count as readable (the reader finds out)")
	}
}
