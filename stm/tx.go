package stm

import (
	"context"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/zest-stm/zest/internal/seam"
)

// Tx is one transaction as its body sees it.
//
// A Tx is used by one goroutine, only inside the body it was passed to
// (including nested Savepoint bodies). Every method panics with an error
// wrapping ErrTxDone once the body has returned, and when called from
// another goroutine than the body's (on amd64 and arm64; see the caveat in
// the package documentation about handle reuse).
type Tx struct {
	t *txn
	// g is the goroutine running the body, where getg is cheap (fastG).
	g uintptr
}

// live returns the transaction state, or panics if the body has ended or
// tx is used from another goroutine.
func (tx *Tx) live() *txn {
	t := tx.t
	if t == nil || fastG && tx.g != getg() {
		txDone()
	}
	return t
}

// errTxDone is the panic value of a stale Tx.
var errTxDone = fmt.Errorf("%w: a Tx is valid only inside its body", ErrTxDone)

// txDone panics for a stale Tx, out of line so that live inlines.
func txDone() { panic(errTxDone) }

// Err returns nil inside the body, and an error wrapping ErrTxDone once the
// body has returned. Packages whose functions return errors check it
// instead of letting the Tx panic.
func (tx *Tx) Err() error {
	if tx == nil || tx.t == nil || fastG && tx.g != getg() {
		return errTxDone
	}
	return nil
}

// Attempt returns the number of the current attempt, starting at 1. A body
// may use it for diagnostics; it must not change what the body writes.
func (tx *Tx) Attempt() int { return tx.live().attempt }

// DB returns the database tx runs on. It panics once the body has
// returned; it does not check the goroutine (a DB is safe to share), so
// that packages can check a Tx's DB for the price of two loads.
func (tx *Tx) DB() *DB {
	t := tx.t
	if t == nil {
		txDone()
	}
	return t.db
}

type readEntry struct {
	c    *cell
	meta uint64 // as read: version and present bit, lock bit clear
}

// writeEntry is one cell of the write set: 32 bytes, so that appending
// and clearing the log stays cheap. A delete is written as ptr == delPtr.
type writeEntry struct {
	c    *cell
	ptr  unsafe.Pointer // the new value of a pointer cell, or delPtr
	word uint64         // the new value of an inline cell
	old  uint64         // meta before we locked it, during commit
}

// deleted is the target of delPtr, the ptr of a write entry that deletes.
var deleted byte

// delPtr marks a write entry as a delete.
var delPtr = unsafe.Pointer(&deleted)

// del reports whether the entry deletes its cell.
func (e *writeEntry) del() bool { return e.ptr == delPtr }

// undoEntry restores a write overwritten inside a savepoint.
type undoEntry struct {
	idx int
	w   writeEntry
}

// savepoint records how far each log reached when a savepoint began.
type savepoint struct {
	writes, undo, locals, localMarks int
}

type localEntry struct {
	key any
	l   seam.Local
}

// txn is the reusable state behind a Tx. It is pooled; the Tx handle is not,
// so a stale handle can never reach a later transaction's state.
type txn struct {
	db      *DB
	ctx     context.Context
	rv      uint64
	attempt int
	serial  bool
	// maxRead is the highest version the attempt read: Run waits until it
	// is durable (see the durable watermark in durable.go).
	maxRead uint64
	// wrote is set once the transaction published writes.
	wrote bool
	// doomed is set when the attempt was aborted, in case the body
	// recovered the conflict panic instead of letting it through.
	doomed *conflict

	reads  []readEntry
	writes []writeEntry
	index  map[*cell]int // write-set index once it grows past linearMax
	order  []int32       // the write set in lock order, during commit
	undo   []undoEntry
	sps    []savepoint

	locals     []localEntry
	localMarks []int

	// staged are the participants staged by the commit under way, and
	// stagingCommit its record, for undoing a commit that failed or panicked.
	staged        []seam.Participant
	stagingCommit *seam.Commit

	// handles are the Tx handles this state lends to its bodies, in turn
	// (see newHandle).
	handles [handleRing]Tx
	handleN uint
	slab    []Tx
}

// Tx handles. A handle is valid only while its body runs: Run clears it
// when the body returns. Where the goroutine identity is cheap (fastG),
// each transaction state lends handles from a ring of handleRing, so a Run
// allocates nothing, and every use checks the goroutine: a handle kept past
// its body fails when used after the body returned or from another
// goroutine. Its one blind spot is the same goroutine using it in a later
// body that drew the same handle from the ring (every handleRing-th Run on
// that state); that use acts on the goroutine's own running transaction.
// Elsewhere every Run takes a fresh handle, carved from slabs.
const (
	handleRing = 256
	handleSlab = 64
)

// newHandle returns the Tx handle for the body about to run on t.
func (t *txn) newHandle(g uintptr) *Tx {
	var tx *Tx
	if fastG {
		tx = &t.handles[t.handleN%handleRing]
		t.handleN++
		tx.g = g
	} else {
		if len(t.slab) == 0 {
			t.slab = make([]Tx, handleSlab)
		}
		tx = &t.slab[0]
		t.slab = t.slab[1:]
	}
	tx.t = t
	return tx
}

// linearMax is the write-set size up to which lookups scan the slice.
const linearMax = 8

// maxSpin is how many times a reader yields to a committing writer holding a
// lock before it gives up and reruns.
const maxSpin = 32

func (t *txn) reset() {
	t.doomed = nil
	t.maxRead = 0
	t.wrote = false
	// The read log points only at cells, which live as long as their
	// table: it need not be zeroed for the garbage collector.
	t.reads = t.reads[:0]
	// The rest is cleared only if used: a read-only transaction skips it.
	if t.needsReset() {
		t.resetMore()
	}
}

// needsReset reports whether reset has more to clear than the read log.
func (t *txn) needsReset() bool {
	return cap(t.reads) > 1<<16 || len(t.writes)|len(t.locals)|len(t.staged) != 0
}

func (t *txn) resetMore() {
	if cap(t.reads) > 1<<16 {
		t.reads = nil
	}
	if len(t.writes) > 0 {
		t.resetWrites()
	}
	if len(t.locals) > 0 || len(t.staged) > 0 {
		t.resetLocals()
	}
}

func (t *txn) resetWrites() {
	clear(t.writes)
	t.writes = t.writes[:0]
	// Clearing a map costs its capacity, not its length: clear a small one
	// only if used, and drop a large one left by a big transaction.
	if n := len(t.index); n > 4*linearMax {
		t.index = nil
	} else if n > 0 {
		clear(t.index)
	}
	if cap(t.writes) > 1<<16 {
		t.writes = nil
		t.order = nil
	}
	clear(t.undo)
	t.undo = t.undo[:0]
	t.sps = t.sps[:0]
}

func (t *txn) resetLocals() {
	clear(t.locals)
	t.locals = t.locals[:0]
	t.localMarks = t.localMarks[:0]
	clear(t.staged)
	t.staged = t.staged[:0]
	t.stagingCommit = nil
}

func (t *txn) findWrite(c *cell) int {
	if len(t.writes) > linearMax {
		if i, ok := t.index[c]; ok {
			return i
		}
		return -1
	}
	for i := range t.writes {
		if t.writes[i].c == c {
			return i
		}
	}
	return -1
}

// read returns the value of c as of the transaction's snapshot, recording
// the read. It aborts the attempt (by panicking with a conflict) when no
// consistent value can be returned.
func (t *txn) read(c *cell) (uint64, unsafe.Pointer, bool) {
	if n := len(t.reads); len(t.writes) == 0 && n < cap(t.reads) {
		// The common case, without a loop or a call: an unlocked cell no
		// newer than the snapshot, and room in the read log.
		m := c.meta.Load()
		if m&(lockedBit|retiredBit) == 0 && m>>verShift <= t.rv {
			w, p := c.word.Load(), c.ptr.Load()
			if c.meta.Load() == m {
				t.maxRead = max(t.maxRead, m>>verShift)
				t.reads = t.reads[:n+1]
				t.reads[n] = readEntry{c, m}
				return w, unsafe.Pointer(p), m&presentBit != 0
			}
		}
	}
	return t.readOwn(c)
}

// readOwn is read for every other case: a cell the transaction may have
// written, a locked, retired or newer cell, or a full read log.
func (t *txn) readOwn(c *cell) (uint64, unsafe.Pointer, bool) {
	if len(t.writes) > 0 {
		if i := t.findWrite(c); i >= 0 {
			e := &t.writes[i]
			if e.del() {
				return 0, nil, false
			}
			return e.word, e.ptr, true
		}
	}
	return t.readCommitted(c)
}

// readCommitted is read for a cell the transaction has not written (or
// whose committed version must be recorded anyway, see observe).
func (t *txn) readCommitted(c *cell) (uint64, unsafe.Pointer, bool) {
	spins := 0
	for {
		m1 := c.meta.Load()
		if m1&lockedBit != 0 {
			// A serial transaction holds no locks while its body runs, so
			// it can wait out a committing writer rather than rerun, for
			// as long as its context lasts.
			if spins++; spins > maxSpin && (!t.serial || spins&63 == 0 && t.ctx.Err() != nil) {
				t.abort(CauseLocked, c)
			}
			runtime.Gosched()
			continue
		}
		w := c.word.Load()
		p := c.ptr.Load()
		if c.meta.Load() != m1 {
			continue
		}
		if m1&retiredBit != 0 {
			// Removed from its table since the key was looked up.
			t.abort(CauseStale, c)
		}
		v := m1 >> verShift
		if v > t.rv {
			// Written after our snapshot: move the snapshot forward if
			// nothing we read has changed since, else rerun.
			if !t.extend() {
				t.abort(CauseStale, c)
			}
			continue
		}
		t.maxRead = max(t.maxRead, v)
		t.reads = append(t.reads, readEntry{c, m1})
		return w, unsafe.Pointer(p), m1&presentBit != 0
	}
}

// present reports whether c holds a value in the transaction. A cell read
// moments ago is answered from the read log, without a second read.
func (t *txn) present(c *cell) bool {
	if len(t.writes) > 0 {
		if i := t.findWrite(c); i >= 0 {
			return !t.writes[i].del()
		}
	}
	for i, n := len(t.reads)-1, max(len(t.reads)-recentReads, 0); i >= n; i-- {
		if t.reads[i].c == c {
			return t.reads[i].meta&presentBit != 0
		}
	}
	_, _, ok := t.read(c)
	return ok
}

// recentReads is how far back present looks in the read log.
const recentReads = 4

// observe records a read of c's committed version, even if the transaction
// wrote c: its commit then validates that no one else changed c.
func (t *txn) observe(c *cell) { t.readCommitted(c) }

// extend moves rv to the current clock if every read is still current.
func (t *txn) extend() bool {
	now := t.db.clock.Load()
	if t.firstInvalid(false) != nil {
		return false
	}
	t.rv = now
	return true
}

// firstInvalid returns a read cell that no longer holds the version read,
// or is locked by another commit; nil if every read is still current. With
// owned set, cells locked by this transaction's own commit pass.
func (t *txn) firstInvalid(owned bool) *cell {
	for i := range t.reads {
		r := &t.reads[i]
		m := r.c.meta.Load()
		if m&^lockedBit != r.meta {
			return r.c
		}
		if m&lockedBit != 0 && (!owned || t.findWrite(r.c) < 0) {
			return r.c
		}
	}
	return nil
}

func (t *txn) write(c *cell, w uint64, p unsafe.Pointer, del bool) {
	if del {
		w, p = 0, delPtr
	}
	e := writeEntry{c: c, ptr: p, word: w}
	if i := t.findWrite(c); i >= 0 {
		if n := len(t.sps); n > 0 && i < t.sps[n-1].writes {
			t.undo = append(t.undo, undoEntry{i, t.writes[i]})
		}
		t.writes[i] = e
		return
	}
	t.writes = append(t.writes, e)
	if n := len(t.writes); n > linearMax {
		if t.index == nil {
			t.index = make(map[*cell]int, 2*linearMax)
		}
		if n == linearMax+1 {
			for j := range t.writes {
				t.index[t.writes[j].c] = j
			}
		} else {
			t.index[c] = n - 1
		}
	}
}

// conflict is the panic value that aborts an attempt for a rerun. Only Run
// recovers it.
type conflict struct {
	cause Cause
	group *Group
}

func (t *txn) abort(cause Cause, c *cell) {
	var g *Group
	if c != nil {
		g = c.group
	}
	t.doomed = &conflict{cause, g}
	panic(t.doomed)
}

// local returns the Local stored under key in the current attempt, creating
// it with create on first use. Attempts that rerun start without Locals.
func (tx *Tx) local(key any, create func() seam.Local) seam.Local {
	t := tx.live()
	for i := range t.locals {
		if t.locals[i].key == key {
			return t.locals[i].l
		}
	}
	l := create()
	t.locals = append(t.locals, localEntry{key, l})
	return l
}

// Savepoint runs fn as a nested transaction. If fn returns an error, its
// writes and the Locals' additions since the savepoint began are rolled back,
// and the error is returned; the outer transaction continues. If fn panics,
// the savepoint rolls back and the panic continues into the outer body.
// Conflicts rerun the whole transaction, as anywhere in a body.
func (tx *Tx) Savepoint(fn func(tx *Tx) error) (err error) {
	t := tx.live()
	sp := savepoint{writes: len(t.writes), undo: len(t.undo), locals: len(t.locals), localMarks: len(t.localMarks)}
	for i := range t.locals {
		t.localMarks = append(t.localMarks, t.locals[i].l.Mark())
	}
	t.sps = append(t.sps, sp)
	defer func() {
		t.sps = t.sps[:len(t.sps)-1]
		if r := recover(); r != nil {
			// A conflict reruns the whole attempt: nothing to undo here.
			if _, ok := r.(*conflict); !ok {
				t.rollbackTo(sp)
			}
			t.localMarks = t.localMarks[:sp.localMarks]
			panic(r)
		}
		if err != nil {
			t.rollbackTo(sp)
		}
		t.localMarks = t.localMarks[:sp.localMarks]
	}()
	return fn(tx)
}

func (t *txn) rollbackTo(sp savepoint) {
	for i := len(t.undo) - 1; i >= sp.undo; i-- {
		u := t.undo[i]
		t.writes[u.idx] = u.w
	}
	clear(t.undo[sp.undo:])
	t.undo = t.undo[:sp.undo]
	if t.index != nil {
		for _, w := range t.writes[sp.writes:] {
			delete(t.index, w.c)
		}
	}
	clear(t.writes[sp.writes:])
	t.writes = t.writes[:sp.writes]
	for i := range t.locals {
		mark := 0
		if i < sp.locals {
			mark = t.localMarks[sp.localMarks+i]
		}
		t.locals[i].l.RollbackTo(mark)
	}
}
