package stm

import (
	"fmt"
	"runtime"
	"slices"
)

// The commit protocol (TL2 with snapshot extension).
//
//  1. A read-only transaction with nothing durable commits at once: every
//     read was checked against its snapshot rv, so it serializes at rv.
//  2. Otherwise, unless it runs in serial mode, it waits while another
//     transaction does.
//  3. If it has durable records, it takes the commit sequencer.
//  4. It locks its write set in cell-id order (so two commits never wait on
//     each other in a cycle); a lock held too long by another commit means a
//     rerun, except in serial mode, which waits.
//  5. It takes the write version wv from the clock and validates its reads: each must still carry the
//     version it read. If wv == rv+1 no one committed in between and
//     validation is skipped.
//  6. Durable records are staged and appended to the log, in wv order, and
//     the sequencer is released.
//  7. It publishes: stores the values and releases each lock with version wv.
//  8. It waits for the log (which returns at once in an asynchronous mode).
//
// A rejected design: holding the locks until the log's fsync. It would make
// a failed write easy to undo, but every commit touching a hot record would
// then wait for a disk flush, and the queue's numbers of later commits would
// still have to be withdrawn. We publish first and stop the DB on a failed
// write instead.

// commit commits the attempt, or says why not in out.
//
// A panic in the commit path (a participant's Pending, Size or Stage, the
// log's Append) releases the sequencer and the locks, unstages what was
// staged, and goes on to the caller as a commitPanic: the DB stays usable.
//
// REQUIRES: the transaction wrote, or has durable records pending.
func (t *txn) commit(out *attemptResult) {
	durable := t.pendingDurable()
	db := t.db
	if err := db.Err(); err != nil {
		out.err = err
		return
	}
	if !t.serial {
		for g := db.gate.Load(); g != nil; g = db.gate.Load() {
			select {
			case <-g.done:
			case <-t.ctx.Done():
				out.err = t.ctx.Err()
				return
			}
		}
	}
	var seqHeld, locked bool
	defer func() {
		if r := recover(); r != nil {
			if t.stagingCommit != nil {
				c := t.stagingCommit
				t.stagingCommit = nil
				db.dur.withdraw(c.Version)
				t.unstage(c)
			}
			if locked {
				t.unlockWrites(len(t.writes))
			}
			if seqHeld {
				db.seqMu.Unlock()
			}
			panic(commitPanic{r})
		}
	}()
	// A durable commit takes the sequencer before its locks, so that the
	// locks are not held while it queues for the sequencer. No lock holder
	// waits for the sequencer, so this order cannot deadlock.
	if durable {
		if err := t.checkSize(); err != nil {
			out.err = err
			return
		}
		db.seqMu.Lock()
		seqHeld = true
	}
	if c := t.lockWrites(); c != nil {
		if durable {
			seqHeld = false
			db.seqMu.Unlock()
		}
		out.conflict = &conflict{CauseLocked, c.group}
		return
	}
	locked = true
	wv := db.clock.Add(1)
	if wv != t.rv+1 {
		if c := t.firstInvalid(true); c != nil {
			if durable {
				seqHeld = false
				db.seqMu.Unlock()
			}
			locked = false
			t.unlockWrites(len(t.writes))
			out.conflict = &conflict{CauseValidate, c.group}
			return
		}
	}
	if durable {
		w, err := t.stageLocked(wv)
		seqHeld = false
		db.seqMu.Unlock()
		if err != nil {
			locked = false
			t.unlockWrites(len(t.writes))
			out.err = err
			return
		}
		out.waiter = w
	}
	locked = false
	t.publish(wv)
	t.wrote = true
}

// lockWrites locks every written cell in id order. On failure it releases
// what it took and returns the cell it could not lock.
//
// The order is kept in t.order, indices into the write set, so that sorting
// moves small integers instead of write entries (whose pointers would cost
// write barriers), and the write-set index stays valid.
func (t *txn) lockWrites() *cell {
	ws := t.writes
	order := t.sortWrites()
	for i, k := range order {
		c := ws[k].c
		spins := 0
		for {
			m := c.meta.Load()
			if m&retiredBit != 0 {
				// Removed from its table: the transaction must find the
				// key's new record.
				t.unlockWrites(i)
				return c
			}
			if m&lockedBit == 0 {
				if c.meta.CompareAndSwap(m, m|lockedBit) {
					ws[k].old = m
					break
				}
				continue
			}
			// Lock order rules out a cycle, so a serial transaction may wait
			// for as long as it takes, or until its context ends; others
			// give up after a while.
			if spins++; spins > maxSpin && (!t.serial || spins&63 == 0 && t.ctx.Err() != nil) {
				t.unlockWrites(i)
				return c
			}
			runtime.Gosched()
		}
	}
	return nil
}

// sortWrites fills t.order with the write set's indices in lock order:
// the cells' addresses (the heap does not move objects).
func (t *txn) sortWrites() []int32 {
	ws := t.writes
	n := len(ws)
	order := t.order[:0]
	for i := range n {
		order = append(order, int32(i))
	}
	t.order = order
	switch {
	case n == 2:
		if ws[1].c.before(ws[0].c) {
			order[0], order[1] = 1, 0
		}
	case n <= 16:
		for i := 1; i < n; i++ {
			for j := i; j > 0 && ws[order[j]].c.before(ws[order[j-1]].c); j-- {
				order[j], order[j-1] = order[j-1], order[j]
			}
		}
	default:
		slices.SortFunc(order, func(a, b int32) int {
			if ws[a].c.before(ws[b].c) {
				return -1
			}
			return 1
		})
	}
	return order
}

// unlockWrites releases the first n locks taken in lock order, restoring
// their meta words.
func (t *txn) unlockWrites(n int) {
	for _, k := range t.order[:n] {
		t.writes[k].c.meta.Store(t.writes[k].old)
	}
}

// publish stores the written values and releases each lock with version wv.
// REQUIRES: the write set is locked and validated.
func (t *txn) publish(wv uint64) {
	// Release stores, not sequentially consistent ones (an XCHG each on
	// amd64): the commit holds each cell's lock, so it is the only writer,
	// and a reader needs only to see the value before the version that
	// unlocks it (it reads the version, the value, then the version again).
	// A pointer value needs the atomic store, for the garbage collector.
	for i := range t.writes {
		w := &t.writes[i]
		c := w.c
		if w.del() {
			c.ptr.Store(nil)
			storeRelease(&c.word, 0)
			storeRelease(&c.meta, wv<<verShift)
			continue
		}
		if c.inline {
			storeRelease(&c.word, w.word)
		} else {
			c.ptr.Store((*byte)(w.ptr))
		}
		storeRelease(&c.meta, wv<<verShift|presentBit)
	}
}

// outcomeUnknown stops the DB and explains the failed or unconfirmed write.
func (db *DB) outcomeUnknown(err error) error {
	db.stop(err)
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
}
