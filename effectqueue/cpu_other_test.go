//go:build !unix

package effectqueue_test

import "time"

// cpuUsed is not measured on this system: CPU-per-operation metrics read 0.
func cpuUsed() time.Duration { return 0 }
