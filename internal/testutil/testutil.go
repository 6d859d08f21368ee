// Package testutil holds small helpers that the tests of several packages
// share. It imports nothing of Zest, so package stm's own tests can use it.
package testutil

import (
	"math/rand/v2"
	"os"
	"strconv"
)

// Elsewhere runs fn on another goroutine and waits for its result. A
// transaction body uses it to commit another transaction, and so make its
// own reads stale at a chosen point: a Run nested in the body itself fails
// with stm.ErrNestedRun.
func Elsewhere(fn func() error) error {
	done := make(chan error)
	go func() { done <- fn() }()
	return <-done
}

// Seeds returns the seeds a randomized test runs: the one in $env to replay
// a run, else one fresh seed, or 50 with ZEST_STRESS set. It fails the test
// if $env is not a number, and logs each seed with how to replay it.
func Seeds(t interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}, env string) []uint64 {
	t.Helper()
	var seeds []uint64
	switch s := os.Getenv(env); {
	case s != "":
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", env, s, err)
		}
		seeds = []uint64{n}
	case os.Getenv("ZEST_STRESS") != "":
		for range 50 {
			seeds = append(seeds, rand.Uint64())
		}
	default:
		seeds = []uint64{rand.Uint64()}
	}
	for _, seed := range seeds {
		t.Logf("seed %d (%s=%d replays it)", seed, env, seed)
	}
	return seeds
}
