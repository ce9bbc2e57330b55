package tcp

import (
	"syscall"
	"unsafe"
)

// osYield gives this thread's core to any other runnable thread (such as
// the one the network poller just woke to deliver our message) without
// parking: a plain busy loop would hold the core for a whole scheduler
// slice.
func osYield() { syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }

// pollFd is struct pollfd of poll(2).
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// readable reports whether the kernel holds bytes (or an error or hang-up)
// for socket fd, without blocking. An unknown descriptor counts as
// readable: the reader goroutine then finds out.
func readable(fd int) bool {
	if fd < 0 {
		return true
	}
	pfd := pollFd{fd: int32(fd), events: 0x1} // POLLIN
	var ts syscall.Timespec                   // zero: do not wait
	n, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno != 0 || n != 0
}
