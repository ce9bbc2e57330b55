//go:build !linux

package launcher

import "os/exec"

// dieWithLauncher is Linux's parent-death signal; elsewhere workers notice
// a lost launcher by WatchLauncher's poll alone.
func dieWithLauncher(*exec.Cmd) {}
