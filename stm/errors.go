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

// ErrOutcomeUnknown is returned by Run when a transaction was applied in
// memory but the write of its durable records failed or could not be
// confirmed: after a failed fsync the records may or may not be on disk. The
// DB stops at the same moment (see ErrStopped). Reopen the DB (and its
// queue) to return to the state on disk, then read it to learn whether the
// transaction committed; do not simply run it again if it is not idempotent.
// Hooks of such a transaction do not run.
var ErrOutcomeUnknown = errors.New("stm: commit outcome unknown: applied in memory, durable write failed")

// ErrNestedRun is returned by Run when it is called from inside a body of the
// same DB, on the body's goroutine. A nested Run would commit on its own
// even if the outer transaction reruns or rolls back, and would wait forever
// for an outer transaction that runs in serial mode. Use Tx.Savepoint for a
// nested transaction, or whilecommit.Do to start one after the commit.
var ErrNestedRun = errors.New("stm: Run called inside a transaction body of the same DB (use Tx.Savepoint)")

// ErrWrongDB is returned (by functions that return errors) or is the panic
// value, wrapped (by functions that do not), when a Tx of one DB is used
// with a table or queue of another DB. Nothing is read or written.
var ErrWrongDB = errors.New("stm: transaction belongs to another DB")

// ErrNameTaken is returned by DB.Register when the name is already registered.
var ErrNameTaken = errors.New("stm: name already registered")

// ErrLogAttached is returned by DB.AttachLog when the DB already has a log.
var ErrLogAttached = errors.New("stm: a log is already attached")

// ErrCommitTooLarge is returned by Run when a transaction's durable records
// would not fit in one atomic write of the log. Nothing is written.
var ErrCommitTooLarge = errors.New("stm: transaction's durable records exceed one atomic write")

// ErrNoLog is returned by Run when a transaction has durable records and no
// durable log is attached (the effect queue was closed or never opened).
var ErrNoLog = errors.New("stm: transaction has durable records and no log is attached")
