// Package testutil holds small helpers that the tests of several packages
// share. It imports nothing of Zest, so package stm's own tests can use it.
package testutil

// Elsewhere runs fn on another goroutine and waits for its result. A
// transaction body uses it to commit another transaction, and so make its
// own reads stale at a chosen point: a Run nested in the body itself fails
// with stm.ErrNestedRun.
func Elsewhere(fn func() error) error {
	done := make(chan error)
	go func() { done <- fn() }()
	return <-done
}
