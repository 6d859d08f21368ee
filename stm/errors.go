package stm

import "errors"

// ErrTooManyAttempts is returned by Run when a transaction reached
// Options.MaxAttempts attempts without committing.
var ErrTooManyAttempts = errors.New("stm: transaction reached the redo limit")

// ErrTxDone is the panic value (wrapped) when a Tx is used after its body
// returned, or from a goroutine other than the body's after it ended.
var ErrTxDone = errors.New("stm: transaction used after its body returned")

// ErrClosed is returned by Run after DB.Close.
var ErrClosed = errors.New("stm: database is closed")

// ErrStopped is returned by Run once the DB stopped accepting commits because
// its durable log failed; errors.Is(err, ErrStopped) holds and the error's
// text carries the cause.
var ErrStopped = errors.New("stm: database stopped accepting commits")

// ErrNotDurable is returned by Run when a transaction was applied in memory
// but its durable records could not be written. The DB is stopped at the same
// moment (see ErrStopped); reopen it to return to the state on disk.
var ErrNotDurable = errors.New("stm: commit applied in memory but not made durable")

// ErrNameTaken is returned by DB.Register when the name is already registered.
var ErrNameTaken = errors.New("stm: name already registered")

// ErrLogAttached is returned by DB.AttachLog when the DB already has a log.
var ErrLogAttached = errors.New("stm: a log is already attached")
