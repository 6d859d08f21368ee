package saga

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
)

// Step is one named step of a flow over the state S. A step is local (Do is
// set) or remote (Call is set), never both.
//
// A Step is a value: Define copies it, and its functions are called by the
// Runner, concurrently for different sagas.
type Step[S any] struct {
	// Name identifies the step in the saga's record and in operation ids.
	// Required, unique in its flow.
	Name string

	// Do is a local step: a transaction body run exactly once, in the same
	// transaction as the saga's progress. An error (or a panic) fails the
	// step; its writes are rolled back. Before the pivot a failed local step
	// starts compensation at once (no retries: its error is a decision made
	// on a consistent snapshot); after the pivot it leaves the saga stuck.
	Do func(tx *stm.Tx, s *S) error
	// Undo reverses a local step during compensation, in a transaction.
	// Optional: without it, compensation passes over the step. An error
	// leaves the saga stuck.
	Undo func(tx *stm.Tx, s *S) error

	// Call is a remote step, called outside any transaction with the
	// saga's state. It may change s (to keep what the remote answered); the
	// change is kept only if the call succeeds. It may be called more than
	// once with the same Call.OpID (retries, crash replays): the remote side
	// must apply one OpID once.
	Call func(ctx context.Context, c Call, s *S) error
	// CallUndo is the reverse operation, called with its own stable OpID.
	// It must succeed when the forward operation never happened (the saga
	// compensates a step whose outcome was unknown), and the remote side
	// must then refuse a late forward call with the forward OpID. Optional:
	// without it, compensation passes over the step.
	CallUndo func(ctx context.Context, c Call, s *S) error
	// Query answers "did this call land?" for c.OpID (forward or undo).
	// Optional. After an ambiguous failure or a crash during the call, the
	// next attempt asks Query first: true counts as success without calling
	// again. Without a Query the call is repeated with the same OpID.
	Query func(ctx context.Context, c Call, s *S) (landed bool, err error)
	// Timeout bounds one attempt of Call, CallUndo or Query. A timeout is
	// ambiguous. Default Options.Timeout.
	Timeout time.Duration
	// Retry is the retry policy of the remote step (forward and undo).
	// Zero fields take Options.Retry's.
	Retry Retry
	// Classify sorts the errors of Call and CallUndo. Default
	// DefaultClassify.
	Classify func(err error) Class

	// Pivot marks the point of no return: once this step has succeeded,
	// the saga no longer compensates; later steps are retried until they
	// succeed or the saga is stuck. A failure of the pivot step itself still
	// compensates the steps before it.
	Pivot bool
}

// Local returns a local step.
func Local[S any](name string, do, undo func(tx *stm.Tx, s *S) error) Step[S] {
	return Step[S]{Name: name, Do: do, Undo: undo}
}

// Remote returns a remote step with the default timeout and retry policy.
func Remote[S any](name string, call, undo func(ctx context.Context, c Call, s *S) error) Step[S] {
	return Step[S]{Name: name, Call: call, CallUndo: undo}
}

func (st *Step[S]) remote() bool { return st.Call != nil }

// Call identifies one attempt of a remote operation. It is a plain value,
// safe to copy.
type Call struct {
	// Saga is the saga's id.
	Saga string
	// Step is the step's name.
	Step string
	// OpID is the operation's id: the same for every attempt of this step
	// in this direction, across retries and restarts, and different for the
	// undo. Send it as the remote side's idempotency key.
	OpID string
	// Attempt counts the failed attempts recorded before this one, plus one.
	// An attempt cut short by a crash is not recorded, so the same number
	// can be seen twice.
	Attempt int
	// Undo is set for the reverse operation.
	Undo bool
	// MayHaveLanded is set when an earlier attempt of this OpID may have
	// reached the remote side (an ambiguous failure, a crash during the
	// call, a replay).
	MayHaveLanded bool
}

// Class says what an error of a remote call means. It is a plain value.
type Class uint8

// The classes of a remote call's error.
const (
	// ClassRetryable: the call did not land; try again after a backoff.
	ClassRetryable Class = iota
	// ClassAmbiguous: the call may have landed (timeout, connection lost after
	// the request was sent). Try again with the same OpID, or ask Query.
	ClassAmbiguous
	// ClassPermanent: retrying cannot help (a rejection). A forward step
	// compensates; an undo is stuck.
	ClassPermanent
)

// String returns the class's name.
func (c Class) String() string {
	switch c {
	case ClassRetryable:
		return "retryable"
	case ClassAmbiguous:
		return "ambiguous"
	case ClassPermanent:
		return "permanent"
	}
	return "unknown"
}

// DefaultClassify is the classifier of steps without their own: errors
// marked with mover.Permanent are permanent; errors marked with Ambiguous,
// deadlines, timeouts and connections cut mid-answer are ambiguous; the
// rest are retryable.
func DefaultClassify(err error) Class {
	switch {
	case mover.IsPermanent(err):
		return ClassPermanent
	case IsAmbiguous(err), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF):
		return ClassAmbiguous
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassAmbiguous
	}
	return ClassRetryable
}

// Retry is a bounded retry policy: capped exponential backoff with jitter.
// The zero value of a field takes the Runner's default. It is a plain value.
type Retry struct {
	// MaxAttempts is the number of attempts after which the step gives
	// up: a forward step compensates (or, after the pivot, is stuck); an
	// undo is stuck. Default 5.
	MaxAttempts int
	// Base is the wait after the first failure; it doubles each attempt up
	// to Max. The wait is drawn between half and all of that. Defaults 100ms
	// and 30s.
	Base, Max time.Duration
}

func (r Retry) or(d Retry) Retry {
	if r.MaxAttempts == 0 {
		r.MaxAttempts = d.MaxAttempts
	}
	if r.Base == 0 {
		r.Base = d.Base
	}
	if r.Max == 0 {
		r.Max = d.Max
	}
	return r
}

// backoff returns the wait after the given failed attempt.
func (r Retry) backoff(attempt int) time.Duration {
	d := r.Base << min(attempt-1, 30)
	if d <= 0 || d > r.Max {
		d = r.Max
	}
	half := d / 2
	return max(time.Millisecond, half+rand.N(d-half+1))
}
