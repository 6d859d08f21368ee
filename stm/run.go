package stm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"

	"github.com/zest-stm/zest/internal/seam"
)

// Run runs fn as a transaction until it commits, and returns nil.
//
// fn may run several times: an attempt that meets a conflicting commit is
// discarded and rerun, so fn must not do I/O or touch state outside the
// transaction (use package whilecommit for in-process effects after the
// commit, and package effectqueue for the outside world). Every attempt sees
// a consistent snapshot.
//
// Run stops without committing when:
//   - fn returns an error: the transaction rolls back and Run returns it;
//   - fn panics: the transaction rolls back and the panic is re-raised;
//   - ctx ends: Run returns ctx.Err() (also while it waits in serial mode);
//   - the redo limit is reached: Run returns an error wrapping ErrTooManyAttempts;
//   - it is called from inside a body of the same DB: Run returns
//     ErrNestedRun at once (use Tx.Savepoint for a nested transaction).
//
// An error or panic from an attempt that read data changed since is not
// reported: the attempt reruns, because its decision was made on stale data.
//
// Before Run returns, and before the transaction's hooks run, every value
// the transaction read is durable: if it read a value of a durable commit
// whose records are not yet on disk, it waits for them.
func (db *DB) Run(ctx context.Context, fn func(tx *Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.Err(); err != nil {
		return err
	}
	g := getg()
	p, prev, nested := db.bodies.enter(g)
	if nested {
		return ErrNestedRun
	}
	t, kept := db.take(p, prev)
	t.ctx = ctx
	tx := t.newHandle(g)
	// Field by field: a composite literal is built in a temporary and
	// copied with 16-byte moves that stall on its 8-byte stores.
	var r runState
	r.db, r.t, r.tx, r.p, r.prev, r.kept = db, t, tx, p, prev, kept
	// No defer here: every way out calls r.finish, the attempt's own
	// deferred function calls it if the body ends its goroutine
	// (runtime.Goexit), and the hooks and waits that could panic after the
	// attempt are guarded where they run (see end and the slow waits).
	var last Cause
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if err := ctx.Err(); err != nil {
				db.stats.canceled.Add(1)
				r.finish()
				return err
			}
			if attempt > db.opts.MaxAttempts {
				db.stats.redoLimit.Add(1)
				r.finish()
				return fmt.Errorf("%w: %d attempts, last rerun cause: %s", ErrTooManyAttempts, attempt-1, last)
			}
			if attempt > db.opts.EscalateAfter && !t.serial {
				if err := db.enterSerial(ctx); err != nil {
					db.stats.canceled.Add(1)
					r.finish()
					return err
				}
				t.serial = true
				db.stats.escalations.Add(1)
			} else if !t.serial {
				backoff(attempt)
			}
			t.reset()
		}
		t.attempt = attempt
		t.rv = db.clock.Load()
		var out attemptResult
		t.run(&r, fn, &out)
		switch {
		case out.conflict != nil:
			last = out.conflict.cause
			db.stats.rerun(out.conflict)
			continue
		case out.panicked:
			r.leave()
			db.stats.panics.Add(1)
			// A decision made on a value that can still be lost is not
			// reported before that value is durable; a panic goes on
			// whatever the wait says.
			_ = r.awaitReads()
			r.end(false)
			r.finish()
			panic(out.panicValue)
		case out.err != nil:
			r.leave()
			db.stats.rollbacks.Add(1)
			if err := r.awaitReads(); err != nil {
				r.finish()
				return err
			}
			r.end(false)
			r.finish()
			return out.err
		}
		r.leave()
		if out.waiter != nil {
			if err := r.wait(out.waiter); err != nil {
				// Applied in memory, not known to be on disk: hooks do not run.
				r.finish()
				return db.outcomeUnknown(err)
			}
		}
		if t.readsDurable() {
			// Nothing to wait for.
		} else if err := r.awaitReads(); err != nil {
			r.finish()
			if t.wrote {
				return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			return err
		}
		if attempt == 1 && fastG {
			r.counted = true
		} else {
			db.stats.commit(attempt)
		}
		r.end(true)
		r.finish()
		return nil
	}
}

// end closes the body's Tx handle and ends the attempt's Locals (hooks
// run here), after the locks and the serial gate are released. If a hook
// panics or ends its goroutine, the Run is finished before that goes on.
func (r *runState) end(committed bool) {
	r.tx.t = nil
	if len(r.t.locals) > 0 {
		r.endLocals(committed)
	}
}

func (r *runState) endLocals(committed bool) {
	r.guarded(func() error {
		t := r.t
		for i := range t.locals {
			t.locals[i].l.End(committed)
		}
		return nil
	})
}

// wait waits for the log to report the commit durable, finishing the Run
// if the wait panics.
func (r *runState) wait(w seam.Waiter) error { return r.guarded(w.Wait) }

// awaitReads is txn.awaitReads, finishing the Run if the wait panics.
func (r *runState) awaitReads() error {
	if r.t.readsDurable() {
		return nil
	}
	return r.guarded(r.t.awaitReadsSlow)
}

// guarded runs fn, the part of a Run after its attempt that runs code
// which may panic or end the goroutine (hooks, waits); then the Run is
// finished before that goes on, as Run itself defers nothing.
func (r *runState) guarded(fn func() error) error {
	done := false
	defer func() {
		if !done {
			r.finish()
		}
	}()
	err := fn()
	done = true
	return err
}

// runState is what Run must release however it ends.
type runState struct {
	db      *DB
	t       *txn
	tx      *Tx
	p       *place
	prev    uint64 // p's state before the Run
	kept    bool   // t is p's kept state
	counted bool   // a first-attempt commit, to count in p
}

// finish closes the handle, opens the serial gate if still closed, gives
// the goroutine's place its state back, and the transaction state to the
// pool unless the place keeps it. The common case (no serial gate, nothing
// but reads to reset, a kept state) is written out here so that it costs
// no calls but the store that leaves the place.
func (r *runState) finish() {
	t := r.t
	r.tx.t = nil
	t.ctx = nil
	if fastG && r.kept && !t.serial && !t.needsReset() {
		t.doomed, t.maxRead, t.wrote, t.reads = nil, 0, false, t.reads[:0]
		r.p.leave(r.prev, r.counted)
		return
	}
	r.finishSlow()
}

func (r *runState) finishSlow() {
	t := r.t
	t.leaveSerial()
	t.reset()
	r.db.bodies.exit(r.p, r.prev, r.counted)
	if !r.kept {
		r.db.pool.Put(t)
	}
}

// leave ends the part of Run that must not be nested, and opens the
// serial gate: hooks and waits come after it. A Run that runs hooks (its
// Locals' End) marks its goroutine's place, so that a Run a hook starts is
// not taken for a nested one.
func (r *runState) leave() {
	if t := r.t; t.serial || len(t.locals) > 0 {
		r.leaveSlow()
	}
}

func (r *runState) leaveSlow() {
	t := r.t
	t.leaveSerial()
	if len(t.locals) > 0 {
		r.db.bodies.runHooks(r.p)
	}
}

// RunValue is Run for a body that returns a value: the value of the attempt
// that committed, or the zero value with an error.
func RunValue[T any](ctx context.Context, db *DB, fn func(tx *Tx) (T, error)) (T, error) {
	var v T
	err := db.Run(ctx, func(tx *Tx) error {
		var err error
		v, err = fn(tx)
		return err
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// attemptResult is the outcome of one attempt.
type attemptResult struct {
	conflict   *conflict
	err        error
	panicked   bool
	panicValue any
	waiter     seam.Waiter
}

// commitPanic carries a panic raised in the commit path (a participant's
// Stage, a log's Append) past the attempt's validation: it is the caller's
// to see, not a symptom of a stale read.
type commitPanic struct{ v any }

// run runs one attempt of fn and, if it returns nil, commits it.
func (t *txn) run(r *runState, fn func(*Tx) error, out *attemptResult) {
	// done is set on every way out but a panic, so that an attempt that
	// returns does not pay for recover.
	done := false
	defer func() {
		if !done {
			if v := recover(); v != nil {
				t.recovered(v, out)
			} else {
				// The body called runtime.Goexit: its goroutine ends, and
				// Run with it, so Run's state is released here.
				r.finish()
			}
		}
	}()
	err := fn(r.tx)
	switch {
	case t.doomed != nil:
		out.conflict = t.doomed
	case err != nil:
		if c := t.firstInvalid(false); c != nil {
			out.conflict = &conflict{CauseErrorStale, c.group}
		} else {
			out.err = err
		}
	case len(t.writes) > 0 || t.pendingDurable():
		t.commit(out)
	}
	done = true
}

// recovered sorts out what an attempt's panic means: a conflict, a panic
// of the commit path, or the body's own panic, which is a conflict if it
// read stale data.
func (t *txn) recovered(r any, out *attemptResult) {
	if c, ok := r.(*conflict); ok {
		*out = attemptResult{conflict: c}
		return
	}
	if cp, ok := r.(commitPanic); ok {
		*out = attemptResult{panicked: true, panicValue: cp.v}
		return
	}
	if c := t.firstInvalid(false); c != nil {
		*out = attemptResult{conflict: &conflict{CausePanicStale, c.group}}
		return
	}
	*out = attemptResult{panicked: true, panicValue: r}
}

// readsDurable reports whether every version the attempt read is durable.
func (t *txn) readsDurable() bool { return t.maxRead < t.db.dur.oldestPending.Load() }

// awaitReadsSlow waits until every version the attempt read is durable.
func (t *txn) awaitReadsSlow() error { return t.db.waitDurable(t.ctx, t.maxRead) }

// backoff yields the processor a random number of times, growing with the
// attempt, so that conflicting transactions spread out.
func backoff(attempt int) {
	for n := rand.IntN(1 << min(attempt, 8)); n > 0; n-- {
		runtime.Gosched()
	}
}

// enterSerial waits until no other transaction runs in serial mode, then
// closes the gate for other update commits.
func (db *DB) enterSerial(ctx context.Context) error {
	select {
	case db.serialSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	db.gate.Store(&gate{done: make(chan struct{})})
	return nil
}

// leaveSerial opens the gate if t closed it.
func (t *txn) leaveSerial() {
	if t.serial {
		t.leaveSerialSlow()
	}
}

func (t *txn) leaveSerialSlow() {
	t.serial = false
	db := t.db
	g := db.gate.Swap(nil)
	close(g.done)
	<-db.serialSem
}
