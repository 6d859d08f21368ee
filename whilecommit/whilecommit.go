package whilecommit

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/stm"
)

// Do registers fn to run once after tx finally commits.
func Do(tx *stm.Tx, fn func()) {
	h := local(tx)
	h.list = append(h.list, hook{fn: fn})
}

// OnRollback registers fn to run once after tx finally rolls back, or at
// the end of the transaction if the savepoint that registered it rolls back.
func OnRollback(tx *stm.Tx, fn func()) {
	h := local(tx)
	h.list = append(h.list, hook{fn: fn, onRollback: true})
}

// Stats counts the hooks a DB has run.
type Stats struct {
	// Ran counts hooks that were called (State.End calls included).
	Ran uint64
	// Panicked counts hooks that panicked (and were recovered).
	Panicked uint64
}

// StatsOf returns the hook counters of db.
func StatsOf(db *stm.DB) Stats {
	c := countersOf(db)
	return Stats{Ran: c.ran.Load(), Panicked: c.panicked.Load()}
}

type counters struct {
	ran, panicked atomic.Uint64
}

type countersKey struct{}

func newCounters() any { return new(counters) }

func countersOf(db *stm.DB) *counters {
	return stmx.Extension(db, countersKey{}, newCounters).(*counters)
}

type hook struct {
	fn         func()
	onRollback bool
	// orphan marks a rollback hook whose savepoint rolled back: it runs
	// whatever the transaction's outcome.
	orphan bool
}

// hooks is the seam.Local holding one attempt's hooks and States.
//
// It is taken from a pool when the attempt registers its first hook and
// returned to it after End, so that a transaction with a few hooks
// allocates nothing for them: the first inlineHooks hooks live in inline.
// An attempt that reruns is never ended; its hooks are dropped with it and
// left to the garbage collector.
type hooks struct {
	db   *stm.DB
	c    *counters // db's
	list []hook    // backed by inline until it outgrows it
	// states are the attached States, in attach order, with their keys.
	states []attached
	// frames record, for each savepoint begun since the hooks were
	// created (Mark), how far list and states reached and, in marks, the
	// States' own marks.
	frames []frame
	marks  []int

	// live is set while a transaction holds the hooks. db and c are kept
	// in the pool (a pool keeps nothing across two garbage collections).
	live bool

	inline       [inlineHooks]hook
	inlineStates [inlineStates]attached
}

const (
	inlineHooks  = 4
	inlineStates = 2
	// maxKept bounds the capacity a pooled hooks keeps: a transaction that
	// registered many hooks does not pin their array in the pool.
	maxKept = 64
)

type attached struct {
	key any
	s   State
}

type frame struct {
	hooks, states, marks int
}

var pool = sync.Pool{New: func() any {
	h := new(hooks)
	h.list = h.inline[:0]
	h.states = h.inlineStates[:0]
	return h
}}

// newHooks is the create function of the Local: a plain function, so that
// looking the Local up allocates no closure.
func newHooks() seam.Local { return pool.Get().(*hooks) }

// localKey is the key of the Local: a pointer, which compares faster than
// a struct in an interface.
var localKey = new(byte)

func local(tx *stm.Tx) *hooks {
	h := stmx.Local(tx, localKey, newHooks).(*hooks)
	if !h.live {
		h.live = true
		// A pooled hooks usually comes back to the DB it served last.
		if db := tx.DB(); db != h.db {
			h.db, h.c = db, countersOf(db)
		}
	}
	return h
}

// release empties h and returns it to the pool.
func (h *hooks) release() {
	clear(h.list)
	h.list = h.list[:0]
	if cap(h.list) > maxKept {
		h.list = h.inline[:0]
	}
	clear(h.states)
	h.states = h.states[:0]
	if cap(h.states) > maxKept {
		h.states = h.inlineStates[:0]
	}
	h.frames = h.frames[:0]
	h.marks = h.marks[:0]
	if cap(h.frames) > maxKept || cap(h.marks) > maxKept {
		h.frames, h.marks = nil, nil
	}
	h.live = false
	pool.Put(h)
}

// Mark records how far the hooks and each State reached when a savepoint
// begins, and returns the position of that record (from 1; 0 means "before
// the hooks existed").
func (h *hooks) Mark() int {
	h.frames = append(h.frames, frame{hooks: len(h.list), states: len(h.states), marks: len(h.marks)})
	for _, a := range h.states {
		h.marks = append(h.marks, a.s.Mark())
	}
	return len(h.frames)
}

// RollbackTo drops the Do hooks registered since mark and keeps the
// rollback hooks as orphans; it rolls each State back to its own mark, and
// those attached since mark to 0 (they stay attached, as stm keeps a Local
// created inside a savepoint that rolled back).
func (h *hooks) RollbackTo(mark int) {
	f := frame{}
	if mark > 0 {
		f = h.frames[mark-1]
		h.frames = h.frames[:mark-1]
	} else {
		h.frames = h.frames[:0]
	}
	kept := h.list[:f.hooks]
	for _, k := range h.list[f.hooks:] {
		if k.onRollback {
			k.orphan = true
			kept = append(kept, k)
		}
	}
	clear(h.list[len(kept):])
	h.list = kept
	for i, a := range h.states {
		m := 0
		if i < f.states {
			m = h.marks[f.marks+i]
		}
		a.s.RollbackTo(m)
	}
	h.marks = h.marks[:f.marks]
}

func (h *hooks) End(committed bool) {
	c := h.c
	for _, a := range h.states {
		c.ran.Add(1)
		h.endState(a.s, committed, c)
	}
	for _, k := range h.list {
		if k.orphan || k.onRollback != committed {
			c.ran.Add(1)
			h.call(k.fn, c)
		}
	}
	h.release()
}

func (h *hooks) call(fn func(), c *counters) {
	defer h.recover(c)
	fn()
}

func (h *hooks) endState(s State, committed bool, c *counters) {
	defer h.recover(c)
	s.End(committed)
}

func (h *hooks) recover(c *counters) {
	if r := recover(); r != nil {
		c.panicked.Add(1)
		h.db.Options().Logger.Error("whilecommit: hook panicked", "panic", fmt.Sprint(r))
	}
}
