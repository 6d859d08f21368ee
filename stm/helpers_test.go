package stm_test

import (
	"context"
	"runtime"
	"time"
)

func runtimeYield() { runtime.Gosched() }

// waitFor lets a contention test run for d nanoseconds of wall time, then
// cancels it. The test measures how much happened in that time; nothing is
// synchronised by the wait.
func waitFor(ctx context.Context, cancel context.CancelFunc, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	cancel()
}
