package main

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// tl2-min is the yardstick of issue 15: the least a transaction engine with
// Zest's API shape (db.Run(ctx, func(tx) error), reads that return values,
// writes that are buffered, conflicts that rerun the body) must do, written
// as plainly as possible. It is TL2 (Dice, Shalev, Shavit 2006) over int64
// cells:
//
//   - a global version clock;
//   - per cell a lock word holding version<<1 | locked, beside the value;
//   - a read checks the lock word before and after loading the value, and
//     aborts when the cell is newer than the transaction's read version or
//     changed meanwhile (so every attempt sees one consistent snapshot:
//     opacity); a locked cell is waited for (see waitUnlocked);
//   - writes are buffered in a write log and read back by later reads;
//   - a commit locks the write set in a fixed order (cell id), takes a write
//     version from the clock, validates the read log against the read
//     version, writes the values and releases each lock with the new
//     version;
//   - a conflict aborts the attempt with a private panic that Run recovers,
//     and Run reruns the body.
//
// The transaction and its logs come from a sync.Pool and keep their capacity.
// There is no snapshot extension, no serial mode, no durable log, no hooks,
// no savepoints and no statistics beyond a rerun counter: everything Zest
// adds on top is what the comparison with this engine prices.
//
// A tl2DB and its cells are safe for concurrent use; a tl2Tx belongs to the
// goroutine running its body and only for the duration of the body.
type tl2DB struct {
	clock  atomic.Uint64
	nextID atomic.Uint64
	reruns atomic.Uint64
	pool   sync.Pool
}

// tl2Cell is one int64 record. The value is an atomic word so that the
// optimistic read between two loads of the lock word is not a data race
// (Zest keeps 8-byte values in an atomic word for the same reason).
type tl2Cell struct {
	lock atomic.Uint64 // version<<1 | 1 while a commit holds it
	val  atomic.Int64
	id   uint64 // the lock order
}

// tl2Tx is one transaction attempt's state.
type tl2Tx struct {
	db     *tl2DB
	rv     uint64 // read version: the clock when the attempt began
	active bool   // inside the body; a Tx used after its body panics
	reads  []*tl2Cell
	writes []tl2Write
}

type tl2Write struct {
	c   *tl2Cell
	v   int64
	old uint64 // the lock word before this commit locked it
}

// tl2Conflict is the private panic value of an aborted attempt.
type tl2Conflict struct{}

var errTL2Conflict = &tl2Conflict{}

func newTL2DB() *tl2DB {
	db := &tl2DB{}
	db.pool.New = func() any {
		return &tl2Tx{db: db, reads: make([]*tl2Cell, 0, 16), writes: make([]tl2Write, 0, 8)}
	}
	return db
}

// newCell returns a cell holding v. Cells made by one goroutine before the
// workers start need no synchronisation beyond starting them.
func (db *tl2DB) newCell(v int64) *tl2Cell {
	c := &tl2Cell{}
	db.initCell(c, v)
	return c
}

// initCell prepares a cell that lives in a slice.
func (db *tl2DB) initCell(c *tl2Cell, v int64) {
	c.id = db.nextID.Add(1)
	c.val.Store(v)
}

// Run runs fn as a transaction until an attempt commits, and returns fn's
// error (an attempt that returns an error commits nothing). The context is
// checked only between attempts. A panic other than a conflict reaches the
// caller; the body never holds a lock, so nothing stays locked.
func (db *tl2DB) Run(ctx context.Context, fn func(tx *tl2Tx) error) error {
	tx := db.pool.Get().(*tl2Tx)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			db.reruns.Add(1)
			if err := ctx.Err(); err != nil {
				db.pool.Put(tx)
				return err
			}
		}
		tx.rv = db.clock.Load()
		tx.reads = tx.reads[:0]
		tx.writes = tx.writes[:0]
		if done, err := tx.attempt(fn); done {
			db.pool.Put(tx)
			return err
		}
	}
}

// attempt runs the body once and commits it; done is false when the attempt
// conflicted and must be rerun.
func (tx *tl2Tx) attempt(fn func(tx *tl2Tx) error) (done bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			tx.active = false
			if r != any(errTL2Conflict) {
				panic(r)
			}
			done, err = false, nil
		}
	}()
	tx.active = true
	err = fn(tx)
	tx.active = false
	if err != nil {
		// Every read was validated against rv when it was made, so the body
		// decided on one consistent snapshot: its error stands.
		return true, err
	}
	return tx.commit(), nil
}

// Load returns c's value as of the transaction's snapshot, or the value the
// transaction wrote to it.
func (tx *tl2Tx) Load(c *tl2Cell) int64 {
	if !tx.active {
		panic("tl2: Tx used outside its body")
	}
	for i := range tx.writes {
		if tx.writes[i].c == c {
			return tx.writes[i].v
		}
	}
	l := c.lock.Load()
	if l&1 != 0 {
		l = waitUnlocked(c)
	}
	v := c.val.Load()
	if l>>1 > tx.rv || c.lock.Load() != l {
		panic(errTL2Conflict)
	}
	tx.reads = append(tx.reads, c)
	return v
}

// waitUnlocked waits until no commit holds c's lock and returns the lock
// word. A holder is a commit, which runs no user code and never waits for a
// reader, so this ends; waiting instead of aborting keeps a reader from
// rerunning again and again while a committer that holds the lock is
// descheduled (more goroutines than GOMAXPROCS). The caller still aborts if
// that commit made the cell newer than its snapshot.
func waitUnlocked(c *tl2Cell) uint64 {
	for spins := 0; ; spins++ {
		if l := c.lock.Load(); l&1 == 0 {
			return l
		}
		if spins > 64 {
			runtime.Gosched()
		}
	}
}

// Store buffers v as c's new value.
func (tx *tl2Tx) Store(c *tl2Cell, v int64) {
	if !tx.active {
		panic("tl2: Tx used outside its body")
	}
	for i := range tx.writes {
		if tx.writes[i].c == c {
			tx.writes[i].v = v
			return
		}
	}
	tx.writes = append(tx.writes, tl2Write{c: c, v: v})
}

// commit publishes the write log, or reports false when a read is no longer
// valid (the attempt reruns).
func (tx *tl2Tx) commit() bool {
	ws := tx.writes
	if len(ws) == 0 {
		return true // read-only: every read was valid at rv
	}
	// Insertion sort by id: write sets are small, and this allocates nothing.
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j].c.id < ws[j-1].c.id; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
	for i := range ws {
		ws[i].old = lockCell(ws[i].c)
	}
	wv := tx.db.clock.Add(1)
	if wv != tx.rv+1 { // somebody committed since rv: validate the reads
		for _, c := range tx.reads {
			l := c.lock.Load()
			if l>>1 > tx.rv || (l&1 != 0 && !tx.owns(c)) {
				for i := range ws {
					ws[i].c.lock.Store(ws[i].old)
				}
				return false
			}
		}
	}
	for i := range ws {
		ws[i].c.val.Store(ws[i].v)
		ws[i].c.lock.Store(wv << 1)
	}
	return true
}

// owns reports whether c is in the write set (so its lock is ours).
func (tx *tl2Tx) owns(c *tl2Cell) bool {
	for i := range tx.writes {
		if tx.writes[i].c == c {
			return true
		}
	}
	return false
}

// lockCell takes c's lock and returns the lock word it replaced. Locks are
// taken in id order, so waiting cannot deadlock, and a holder is a commit,
// which runs no user code and finishes quickly.
func lockCell(c *tl2Cell) uint64 {
	for spins := 0; ; spins++ {
		l := c.lock.Load()
		if l&1 == 0 && c.lock.CompareAndSwap(l, l|1) {
			return l
		}
		if spins > 64 {
			runtime.Gosched()
		}
	}
}
