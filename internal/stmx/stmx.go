// Package stmx gives packages built on stm (table, whilecommit,
// effectqueue) typed access to the engine's plumbing, which stm does not
// export to applications. See package seam for the contracts.
package stmx

import (
	"reflect"
	"unsafe"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/stm"
)

// Filled from seam's hooks after stm's init ran (stm is imported above, so
// Go initializes it first).
var (
	txLocal     = seam.TxLocal.(func(*stm.Tx, any, func() seam.Local) seam.Local)
	extension   = seam.Extension.(func(*stm.DB, any, func() any) any)
	attachLog   = seam.AttachLog.(func(*stm.DB, seam.Log) error)
	detachLog   = seam.DetachLog.(func(*stm.DB, seam.Log))
	logOf       = seam.LogOf.(func(*stm.DB) seam.Log)
	stop        = seam.Stop.(func(*stm.DB, error))
	durable     = seam.Durable.(func(*stm.DB, uint64))
	initVar     = seam.InitVar.(func(any, *stm.Group, unsafe.Pointer))
	observe     = seam.Observe.(func(*stm.Tx, any))
	hasPointers = seam.HasPointers.(func(reflect.Type) bool)
	retire      = seam.Retire.(func(any, bool) bool)
)

// Local returns the Local stored under key in tx's current attempt,
// creating it with create on first use. Attempts that rerun start without
// Locals.
func Local(tx *stm.Tx, key any, create func() seam.Local) seam.Local {
	return txLocal(tx, key, create)
}

// Extension returns the value stored under key for db, storing create()
// first if there is none: per-DB state of packages built on stm.
func Extension(db *stm.DB, key any, create func() any) any { return extension(db, key, create) }

// AttachLog makes l the DB's durable log. A DB has at most one; a second
// gets an error wrapping stm.ErrLogAttached.
func AttachLog(db *stm.DB, l seam.Log) error { return attachLog(db, l) }

// DetachLog removes l if it is the DB's log.
func DetachLog(db *stm.DB, l seam.Log) { detachLog(db, l) }

// Log returns the DB's durable log, or nil.
func Log(db *stm.DB) seam.Log { return logOf(db) }

// Stop makes db refuse every further commit with an error wrapping
// stm.ErrStopped and cause. A Log calls it when a write failed.
func Stop(db *stm.DB, cause error) { stop(db, cause) }

// Durable tells db that every commit up to version v is durable, so that
// readers of those commits' values may return.
func Durable(db *stm.DB, v uint64) { durable(db, v) }

// InitVar prepares a zero Var as a cell of group g holding v, as if
// written before any transaction. Call it once, before the Var is
// reachable by any transaction (a durable table loads its records with it).
func InitVar[T any](x *stm.Var[T], g *stm.Group, v T) { initVar(x, g, unsafe.Pointer(&v)) }

// Observe records a read of x's committed version in tx, even when tx has
// written x itself, so that the commit validates it. Package table reads
// its key-set stripes with it: a Len after the transaction's own insert
// must still conflict with another transaction's insert.
func Observe[T any](tx *stm.Tx, x *stm.Var[T]) { observe(tx, x) }

// HasPointers reports whether values of t contain pointers, slices, maps,
// channels, functions or interfaces. Strings do not count.
func HasPointers(t reflect.Type) bool { return hasPointers(t) }

// Retire marks x's cell retired if it is absent and not locked by a commit,
// and reports whether it did. A retired cell never changes again, and every
// transaction that touches it reruns; package table retires a record before
// it drops it from its index, so that no transaction keeps using it. A cell
// no commit ever wrote (a record whose insert has not committed, or rolled
// back) is retired only with neverWritten set.
func Retire[T any](x *stm.Var[T], neverWritten bool) bool { return retire(x, neverWritten) }
