//go:build unix

package mover

import (
	"syscall"
	"time"
)

// cpuUsed returns the user plus system CPU time of this process so far, for
// benchmarks that report CPU per operation beside throughput.
func cpuUsed() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
