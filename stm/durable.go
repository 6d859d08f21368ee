package stm

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zest-stm/zest/internal/seam"
)

// The durable seam: how the effect queue and durable tables join a commit.
// The contract is in package internal/seam; this file is stm's side of it.
//
// The durable watermark. A durable commit publishes its values before its
// records reach disk (holding locks across an fsync would make every commit
// on a hot record wait for the disk). So a transaction may read a value whose
// commit can still be lost. It must not act on it: before Run returns, and
// before its hooks run, a transaction waits until every version it read is
// durable. The DB tracks the versions of durable commits appended to the log
// and not yet reported durable, oldest first; oldestPending is the first of
// them (math.MaxUint64 if none). A transaction whose highest read version is
// below oldestPending read only durable (or in-memory) values and pays one
// atomic load.

// durableState is the DB's record of durable commits not yet on disk.
type durableState struct {
	// oldestPending is the version of the oldest durable commit appended
	// and not yet durable, or math.MaxUint64.
	oldestPending atomic.Uint64

	mu struct {
		sync.Mutex
		pending []uint64      // appended, not yet durable, in version order
		changed chan struct{} // closed when oldestPending moves or the DB stops
	}
}

func (d *durableState) init() {
	d.oldestPending.Store(math.MaxUint64)
	d.mu.changed = make(chan struct{})
}

// appended records a durable commit of version v.
// REQUIRES: db.seqMu held (versions arrive in increasing order).
func (d *durableState) appended(v uint64) {
	d.mu.Lock()
	d.mu.pending = append(d.mu.pending, v)
	if len(d.mu.pending) == 1 {
		d.oldestPending.Store(v)
	}
	d.mu.Unlock()
}

// durable records that every commit up to version v is durable.
func (d *durableState) durable(v uint64) {
	d.mu.Lock()
	n := 0
	for n < len(d.mu.pending) && d.mu.pending[n] <= v {
		n++
	}
	if n > 0 {
		d.mu.pending = append(d.mu.pending[:0], d.mu.pending[n:]...)
		if len(d.mu.pending) > 0 {
			d.oldestPending.Store(d.mu.pending[0])
		} else {
			d.oldestPending.Store(math.MaxUint64)
		}
		close(d.mu.changed)
		d.mu.changed = make(chan struct{})
	}
	d.mu.Unlock()
}

// withdraw forgets version v, appended last, if it is still pending.
// REQUIRES: db.seqMu held.
func (d *durableState) withdraw(v uint64) {
	d.mu.Lock()
	if n := len(d.mu.pending); n > 0 && d.mu.pending[n-1] == v {
		d.mu.pending = d.mu.pending[:n-1]
		if n == 1 {
			d.oldestPending.Store(math.MaxUint64)
		}
		close(d.mu.changed)
		d.mu.changed = make(chan struct{})
	}
	d.mu.Unlock()
}

// wake wakes every waiter, so that they see that the DB stopped.
func (d *durableState) wake() {
	d.mu.Lock()
	close(d.mu.changed)
	d.mu.changed = make(chan struct{})
	d.mu.Unlock()
}

// waitDurable waits until every commit up to version v is durable.
// It fails if ctx ends or the DB stops first: then what the transaction read
// may be lost, and it must not act on it.
func (db *DB) waitDurable(ctx context.Context, v uint64) error {
	d := &db.dur
	for {
		d.mu.Lock()
		ch := d.mu.changed
		d.mu.Unlock()
		if d.oldestPending.Load() > v {
			return nil
		}
		if s := db.stopped.Load(); s != nil {
			return fmt.Errorf("%w: the transaction read a value whose commit was not made durable: %w", ErrStopped, s.err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("stm: waiting for the values read to become durable: %w", ctx.Err())
		}
	}
}

// logOf returns the DB's log, or nil.
func (db *DB) logOf() seam.Log {
	if s := db.log.Load(); s != nil {
		return s.l
	}
	return nil
}

// checkSize refuses a commit that its log could not write atomically.
func (t *txn) checkSize() error {
	lim, ok := t.db.logOf().(seam.Limiter)
	if !ok {
		return nil
	}
	maxRecords, maxBytes := lim.Limits()
	var records int
	var size int64
	for i := range t.locals {
		if s, ok := t.locals[i].l.(seam.Sizer); ok {
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

// attachLog makes l the DB's log. A DB has at most one.
func (db *DB) attachLog(l seam.Log) error {
	if !db.log.CompareAndSwap(nil, &logSlot{l}) {
		return ErrLogAttached
	}
	return nil
}

// detachLog removes l if it is the DB's log.
func (db *DB) detachLog(l seam.Log) {
	if s := db.log.Load(); s != nil && s.l == l {
		db.log.CompareAndSwap(s, nil)
	}
}

// pendingDurable reports whether any Local of t has records to stage.
func (t *txn) pendingDurable() bool {
	return len(t.locals) > 0 && t.pendingDurableSlow()
}

func (t *txn) pendingDurableSlow() bool {
	for i := range t.locals {
		if p, ok := t.locals[i].l.(seam.Participant); ok && p.Pending() {
			return true
		}
	}
	return false
}

// stageLocked builds the commit record and appends it to the log.
// REQUIRES: db.seqMu held, write locks held, reads validated.
func (t *txn) stageLocked(wv uint64) (seam.Waiter, error) {
	s := t.db.log.Load()
	if s == nil {
		return nil, ErrNoLog
	}
	sc := &stagedCommit{Commit: seam.Commit{Version: wv, Time: time.Now()}}
	sc.Records = sc.records[:0]
	c := &sc.Commit
	t.staged = t.staged[:0]
	t.stagingCommit = c
	for i := range t.locals {
		if p, ok := t.locals[i].l.(seam.Participant); ok && p.Pending() {
			t.staged = append(t.staged, p)
			p.Stage(c)
		}
	}
	// Pending before Append: the log may write the commit and report it
	// durable before Append returns.
	t.db.dur.appended(wv)
	w, err := s.l.Append(c)
	t.stagingCommit = nil
	if err != nil || w == nil {
		// Not written, or written without waiting for the disk (an
		// asynchronous log): readers do not wait for it.
		t.db.dur.withdraw(wv)
	}
	if err != nil {
		t.unstage(c)
		return nil, fmt.Errorf("stm: commit: %w", err)
	}
	t.staged = t.staged[:0]
	return w, nil
}

// stagedCommit is a commit with room for its first records in the same
// allocation: a transaction that enqueues an entry and writes a durable
// record or two stages them without growing the slice, under the commit
// sequencer.
type stagedCommit struct {
	seam.Commit
	records [2]seam.Record
}

// unstage undoes the Stage calls of a commit that failed, newest first.
func (t *txn) unstage(c *seam.Commit) {
	for i := len(t.staged) - 1; i >= 0; i-- {
		t.staged[i].Unstage(c)
	}
	t.staged = t.staged[:0]
}
