package mover

import "errors"

// ErrRunning is returned by Run when the mover has already been run.
var ErrRunning = errors.New("mover: already running")

// ErrQueueTaken is returned by New when another Mover of this process
// already serves the queue. Two movers on one queue would deliver entries
// twice and out of order. The claim ends when the first mover's Run returns,
// or at its Shutdown if it never ran.
var ErrQueueTaken = errors.New("mover: the queue already has a mover in this process")

// ErrNoSinks is returned by New when no sink is given.
var ErrNoSinks = errors.New("mover: no sinks")
