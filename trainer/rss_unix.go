//go:build unix

package trainer

import (
	"runtime"
	"syscall"
)

// maxRSS is getrusage's peak resident set size in bytes (ru_maxrss is in
// kilobytes except on Darwin, where it is bytes).
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) << 10
}
