package saga

import (
	"errors"
	"fmt"
)

// ErrDuplicate is returned by Flow.Start when a saga with the same id
// already exists. The error is a *DuplicateError carrying its status.
var ErrDuplicate = errors.New("saga: a saga with this id already exists")

// ErrNotFound is returned when no saga has the given id.
var ErrNotFound = errors.New("saga: no such saga")

// ErrNotStuck is returned by Runner.Resolve for a saga that is not stuck.
var ErrNotStuck = errors.New("saga: saga is not stuck")

// ErrBadID is returned for a saga id that is empty or longer than
// Options.MaxIDLen.
var ErrBadID = errors.New("saga: bad saga id")

// ErrBadFlow is returned by Define for an invalid flow: no steps, duplicate
// or empty step names, a step that is neither local nor remote.
var ErrBadFlow = errors.New("saga: invalid flow")

// ErrBadState is returned when a state value does not round-trip through
// the encoding (msgpack): unexported fields, functions, channels, or a
// custom encoder that loses data.
var ErrBadState = errors.New("saga: state does not round-trip through the encoding")

// ErrStateTooLarge is returned when a saga's encoded state exceeds
// Options.MaxStateSize.
var ErrStateTooLarge = errors.New("saga: state too large")

// ErrNotRegistered is returned by Flow.Start for a flow that was not
// registered with a Runner.
var ErrNotRegistered = errors.New("saga: flow is not registered")

// ErrRegistered is returned by Flow.Register for a flow already registered,
// or a name and version already taken on the Runner.
var ErrRegistered = errors.New("saga: flow already registered")

// ErrBadAction is returned by Runner.Resolve for an unknown action or a
// resolution without its author.
var ErrBadAction = errors.New("saga: bad resolution")

// ErrWrongDB is returned when a transaction of another stm.DB than the
// runner's is passed to Start, Status or Get.
var ErrWrongDB = errors.New("saga: transaction belongs to another DB than the runner's")

// ErrRunning is returned by Runner.Run when the runner is already running.
var ErrRunning = errors.New("saga: runner already running")

// DuplicateError is the error Flow.Start returns for an id already taken;
// errors.Is(err, ErrDuplicate) holds. It is a plain value, safe to share.
type DuplicateError struct {
	ID     string
	Status Status
}

// Error describes the duplicate.
func (e *DuplicateError) Error() string {
	return fmt.Sprintf("saga: a saga with id %q already exists (flow %s, %s)", e.ID, e.Status.Flow, e.Status.Phase)
}

// Unwrap returns ErrDuplicate.
func (e *DuplicateError) Unwrap() error { return ErrDuplicate }

// ambiguous marks an error after which the call may or may not have landed.
type ambiguous struct{ err error }

func (a *ambiguous) Error() string { return a.err.Error() }
func (a *ambiguous) Unwrap() error { return a.err }

// Ambiguous wraps err to say that the remote call may have landed (the
// request was sent and the answer was lost). The next attempt runs the
// step's query first, if it has one, and otherwise calls again with the same
// operation id.
func Ambiguous(err error) error {
	if err == nil {
		return nil
	}
	return &ambiguous{err}
}

// IsAmbiguous reports whether err was marked with Ambiguous.
func IsAmbiguous(err error) bool {
	var a *ambiguous
	return errors.As(err, &a)
}
