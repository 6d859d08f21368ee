package stm

import (
	"errors"
	"fmt"
	"time"
)

// The durable seam.
//
// A package that must write records durably and atomically with a commit
// (the effect queue; persistent tables) takes part in the commit as a
// Participant: a Local of the transaction that also stages records. The DB
// hands the staged records of each committing transaction to its Log, which
// writes them (grouping concurrent commits into one write).
//
// Invariants:
//
//   - Stage and Log.Append are called under the commit sequencer, once per
//     committing attempt, after the transaction was validated and while its
//     write locks are held. The sequencer is taken before the locks. Successive calls have increasing Commit.Version,
//     and Version order is a valid serialization order of the transactions.
//     So a participant may number its records with a plain counter: the
//     numbers follow the serialization order, with no gaps.
//   - If Append fails, every participant's Unstage is called (still under
//     the sequencer) and the transaction rolls back with nothing published.
//   - Values are published in memory after Append and before the records
//     are durable; Run returns after Waiter.Wait. If Wait fails the DB is
//     stopped (see ErrNotDurable), so memory never silently runs ahead of disk.
//   - Attempts that rerun or roll back never reach Stage.

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
	// returns a Waiter that reports when they are durable. An error means
	// nothing of c was or will be written.
	Append(c *Commit) (Waiter, error)
}

// Waiter reports the outcome of a durable write.
type Waiter interface {
	// Wait blocks until the records are durable (in the log's sync mode) or
	// accepted for writing (in an asynchronous mode), and returns the error
	// that prevented it, if any.
	Wait() error
}

// Store is a Log that can read back what it wrote, for participants that
// load their state when they open (persistent tables).
type Store interface {
	Log
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

// ErrCommitTooLarge is returned by Run when a transaction's durable records
// would not fit in one atomic write of the log. Nothing is written.
var ErrCommitTooLarge = errors.New("stm: transaction's durable records exceed one atomic write")

// Log returns the DB's log, or nil.
func (db *DB) Log() Log {
	if s := db.log.Load(); s != nil {
		return s.l
	}
	return nil
}

// checkSize refuses a commit that its log could not write atomically.
func (t *txn) checkSize() error {
	lim, ok := t.db.Log().(Limiter)
	if !ok {
		return nil
	}
	maxRecords, maxBytes := lim.Limits()
	var records int
	var size int64
	for i := range t.locals {
		if s, ok := t.locals[i].l.(Sizer); ok {
			r, b := s.Size()
			records, size = records+r, size+b
		}
	}
	if records > maxRecords || size > maxBytes {
		return fmt.Errorf("%w: %d records, %d bytes; the log writes at most %d records, %d bytes at once",
			ErrCommitTooLarge, records, size, maxRecords, maxBytes)
	}
	return nil
}

// ErrNoLog is returned by Run when a transaction has durable records and no
// Log is attached.
var ErrNoLog = errors.New("stm: transaction has durable records and no log is attached")

// AttachLog makes l the DB's log. A DB has at most one.
func (db *DB) AttachLog(l Log) error {
	if !db.log.CompareAndSwap(nil, &logSlot{l}) {
		return ErrLogAttached
	}
	return nil
}

// DetachLog removes l if it is the DB's log. Commits with durable records
// fail with ErrNoLog afterwards.
func (db *DB) DetachLog(l Log) {
	if s := db.log.Load(); s != nil && s.l == l {
		db.log.CompareAndSwap(s, nil)
	}
}

// pendingDurable reports whether any Local of t has records to stage.
func (t *txn) pendingDurable() bool {
	for i := range t.locals {
		if p, ok := t.locals[i].l.(Participant); ok && p.Pending() {
			return true
		}
	}
	return false
}

// stage builds the commit record and appends it to the log.
// REQUIRES: db.seqMu held, write locks held, reads validated.
func (t *txn) stageLocked(wv uint64) (Waiter, error) {
	s := t.db.log.Load()
	if s == nil {
		return nil, ErrNoLog
	}
	c := &Commit{Version: wv, Time: time.Now()}
	var staged []Participant
	for i := range t.locals {
		if p, ok := t.locals[i].l.(Participant); ok && p.Pending() {
			p.Stage(c)
			staged = append(staged, p)
		}
	}
	w, err := s.l.Append(c)
	if err != nil {
		for i := len(staged) - 1; i >= 0; i-- {
			staged[i].Unstage(c)
		}
		return nil, fmt.Errorf("stm: commit: %w", err)
	}
	return w, nil
}
