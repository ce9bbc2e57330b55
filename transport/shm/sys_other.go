//go:build !linux

package shm

import "errors"

// errNotLinux is every segment call's error off Linux: the transport maps
// peers' memfd segments through /proc, which only Linux has.
var errNotLinux = errors.New("shared-memory transport: needs Linux (memfd segments mapped through /proc)")

func newSegment(size int) (fd int, mem []byte, err error) { return -1, nil, errNotLinux }

func openSegment(pid, fd int) ([]byte, error) { return nil, errNotLinux }

func unmap(mem []byte) {}

func closeFD(fd int) {}

// HostID is empty off Linux: no two ranks are known to share memory, so
// --transport auto never picks this transport.
func HostID() string { return "" }
