package transport

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Yield lets this process's other goroutines run, then offers the core to
// other processes, as Open MPI's yield-when-idle does: a peer rank sharing
// this core may be the one a poll waits for (transport/shm's receives,
// the collectives' shared windows).
func Yield() {
	runtime.Gosched()
	_, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}
