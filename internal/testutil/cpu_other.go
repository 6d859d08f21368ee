//go:build !unix

package testutil

import "time"

// CPUTime is not measured on this system: it returns 0, and CPU-per-operation
// metrics read 0.
func CPUTime() time.Duration { return 0 }
