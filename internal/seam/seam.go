// Package seam holds the types through which packages built on stm take
// part in a transaction: per-transaction state (Local), durable records
// staged with a commit (Participant, Commit, Record), and the DB's durable
// log (Log, Store, Waiter, Limiter, Sizer). Applications never use them; they
// live here so that `go doc stm` shows only what an application needs.
//
// Package stm fills the hook variables below in its init, typed as any to
// avoid an import cycle; package stmx wraps them with their real types.
//
// # The durable seam
//
// A package that must write records durably and atomically with a commit
// (the effect queue; durable tables) takes part in the commit as a
// Participant: a Local of the transaction that also stages records. The DB
// hands the staged records of each committing transaction to its Log, which
// writes them (grouping concurrent commits into one write).
//
// Invariants:
//
//   - Stage and Log.Append are called under the commit sequencer, once per
//     committing attempt, after the transaction was validated and while its
//     write locks are held. Successive calls have increasing Commit.Version,
//     and Version order is a valid serialization order of the transactions.
//     So a participant may number its records with a plain counter: the
//     numbers follow the serialization order, with no gaps.
//   - If Append fails, every participant's Unstage is called (still under
//     the sequencer) and the transaction rolls back with nothing published.
//   - Values are published in memory after Append and before the records are
//     durable. Run returns after Waiter.Wait; a transaction that read a
//     published value whose commit is not yet durable waits for it too
//     (see Durable). If a write fails the DB is stopped, so memory never
//     silently runs ahead of disk.
//   - Attempts that rerun or roll back never reach Stage.
package seam

import "time"

// Local is per-transaction state kept by a package built on stm (commit
// hooks, queued entries). Its methods are called by the goroutine running
// the transaction.
type Local interface {
	// Mark returns a position to which RollbackTo can later return.
	Mark() int
	// RollbackTo undoes what was added after mark, because the savepoint
	// that took the mark rolled back. A Local created inside that savepoint
	// is rolled back to 0.
	RollbackTo(mark int)
	// End is called once when the transaction has finally committed
	// (committed is true) or rolled back, after its locks and the serial
	// gate were released and, for a commit, after everything it read and
	// wrote is durable. It is not called for attempts that rerun.
	End(committed bool)
}

// Participant is a Local that writes durable records with the commit.
type Participant interface {
	Local
	// Pending reports whether the transaction has records to stage.
	Pending() bool
	// Stage appends the transaction's records to c. It must not fail:
	// bad input is refused when the body adds it.
	Stage(c *Commit)
	// Unstage undoes Stage because the commit failed.
	Unstage(c *Commit)
}

// Commit is one transaction's durable part, as handed to the Log.
type Commit struct {
	// Version is the transaction's write version: its place in the
	// serialization order.
	Version uint64
	// Time is the commit time.
	Time time.Time
	// Records are the staged writes.
	Records []Record
	// Size is the sum of the records' key and value lengths.
	Size int
}

// Record is one durable write of a Commit.
type Record struct {
	Key, Value []byte
	Delete     bool
}

// Add appends a record, keeping Size current.
func (c *Commit) Add(r Record) {
	c.Records = append(c.Records, r)
	c.Size += len(r.Key) + len(r.Value)
}

// Log makes commits durable.
type Log interface {
	// Append takes one commit's records, in commit order (see the
	// invariants above). It must not wait for I/O: it queues the records and
	// returns a Waiter that reports when they are durable, or a nil Waiter
	// when the log does not wait for the disk (an asynchronous mode). An
	// error means nothing of c was or will be written.
	//
	// A log that returns a non-nil Waiter must call stmx.Durable(db, v)
	// once every commit up to version v is durable, before it releases
	// their Waiters.
	Append(c *Commit) (Waiter, error)
}

// Waiter reports the outcome of a durable write.
type Waiter interface {
	// Wait blocks until the records are durable and returns the error that
	// prevented it, if any.
	Wait() error
}

// Store is a Log that can read back what it wrote, for participants that
// load their state when they open (durable tables).
type Store interface {
	Log
	// KeyPrefix is the prefix under which every key the DB writes must
	// live, so that several DBs can share one storage.
	KeyPrefix() []byte
	// Scan calls fn with each stored record whose key starts with prefix,
	// in key order, until fn returns an error. The slices are valid only
	// during the call.
	Scan(prefix []byte, fn func(key, value []byte) error) error
}

// Limiter is implemented by a Log that can write only so much atomically.
type Limiter interface {
	// Limits returns the largest commit, in records and bytes, that the
	// log writes atomically.
	Limits() (records int, bytes int64)
}

// Sizer is implemented by a Participant that can tell, before the commit,
// how much it will stage.
type Sizer interface {
	Size() (records int, bytes int64)
}

// Hooks into package stm, set by its init. See package stmx for their
// types; nothing else may call them.
var (
	TxLocal     any
	Extension   any
	AttachLog   any
	DetachLog   any
	LogOf       any
	Stop        any
	Durable     any
	InitVar     any
	Observe     any
	HasPointers any
	Retire      any
)
