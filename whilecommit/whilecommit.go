package whilecommit

import (
	"fmt"
	"sync/atomic"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/stm"
)

// Do registers fn to run once after tx finally commits.
func Do(tx *stm.Tx, fn func()) {
	local(tx).list = append(local(tx).list, hook{fn: fn})
}

// OnRollback registers fn to run once after tx finally rolls back, or at
// the end of the transaction if the savepoint that registered it rolls back.
func OnRollback(tx *stm.Tx, fn func()) {
	local(tx).list = append(local(tx).list, hook{fn: fn, onRollback: true})
}

// Stats counts the hooks a DB has run.
type Stats struct {
	// Ran counts hooks that were called.
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

func countersOf(db *stm.DB) *counters {
	return stmx.Extension(db, countersKey{}, func() any { return new(counters) }).(*counters)
}

type hook struct {
	fn         func()
	onRollback bool
	// orphan marks a rollback hook whose savepoint rolled back: it runs
	// whatever the transaction's outcome.
	orphan bool
}

// hooks is the seam.Local holding one attempt's hooks.
type hooks struct {
	db   *stm.DB
	list []hook
}

type localKey struct{}

func local(tx *stm.Tx) *hooks {
	return stmx.Local(tx, localKey{}, func() seam.Local { return &hooks{db: tx.DB()} }).(*hooks)
}

func (h *hooks) Mark() int { return len(h.list) }

func (h *hooks) RollbackTo(mark int) {
	kept := h.list[:mark]
	for _, k := range h.list[mark:] {
		if k.onRollback {
			k.orphan = true
			kept = append(kept, k)
		}
	}
	clear(h.list[len(kept):])
	h.list = kept
}

func (h *hooks) End(committed bool) {
	c := countersOf(h.db)
	for _, k := range h.list {
		if k.orphan || k.onRollback != committed {
			c.ran.Add(1)
			h.call(k.fn, c)
		}
	}
}

func (h *hooks) call(fn func(), c *counters) {
	defer func() {
		if r := recover(); r != nil {
			c.panicked.Add(1)
			h.db.Options().Logger.Error("whilecommit: hook panicked", "panic", fmt.Sprint(r))
		}
	}()
	fn()
}
