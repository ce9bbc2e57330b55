package launcher

import (
	"os/exec"
	"syscall"
)

// dieWithLauncher makes the kernel send the worker SIGHUP when the
// launcher dies (the parent-death signal follows the thread that forked;
// the Go runtime keeps its threads, so that is the process's life), so a
// launcher killed with -9 never leaves workers running: WatchLauncher
// turns the SIGHUP into a job failure that names the lost launcher, and
// a worker that does not watch dies of it.
func dieWithLauncher(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGHUP
}
