package shm

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Linux system calls, cgo-free (golang.org/x/sys/unix).

// newSegment creates an anonymous shared-memory file of size bytes
// (memfd: it has no name in any file system, so nothing can be left in
// /dev/shm) and maps it.
func newSegment(size int) (fd int, mem []byte, err error) {
	fd, err = unix.MemfdCreate("strand-shm", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("fchmod: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("ftruncate %d: %w", size, err)
	}
	mem, err = unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return fd, mem, nil
}

// openSegment maps the memfd that process pid holds as descriptor fd,
// through /proc (which the kernel allows only to processes that may
// inspect pid: the same user, the same pid namespace).
func openSegment(pid, fd int) ([]byte, error) {
	path := fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
	f, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(f)
	var st unix.Stat_t
	if err := unix.Fstat(f, &st); err != nil {
		return nil, fmt.Errorf("fstat %s: %w", path, err)
	}
	if st.Size < headerBytes {
		return nil, fmt.Errorf("%s: %d bytes is no strand segment", path, st.Size)
	}
	mem, err := unix.Mmap(f, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return mem, nil
}

func unmap(mem []byte) { _ = unix.Munmap(mem) }

func closeFD(fd int) { _ = unix.Close(fd) }

// HostID identifies the kernel and the namespaces a process shares memory
// through: two processes with the same HostID can reach each other's
// memfd segments (same boot of the same kernel, same pid namespace, so
// /proc/<pid> names the peer) and, with the network namespace included, a
// job split over network namespaces on one machine (the two-node test
// layout) treats each namespace as its own node.
func HostID() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	pidns, err1 := os.Readlink("/proc/self/ns/pid")
	netns, err2 := os.Readlink("/proc/self/ns/net")
	if err1 != nil || err2 != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + pidns + "/" + netns
}
