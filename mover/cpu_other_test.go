//go:build !unix

package mover

import "time"

// cpuUsed is not measured on this system: CPU-per-operation metrics read 0.
func cpuUsed() time.Duration { return 0 }
