package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// errSkip ends an update's transaction without changes: the saga no longer
// waits for what the caller brings (a stale entry, a retry already fired).
var errSkip = errors.New("saga: nothing to do")

// location names the user code an update is running: a local step (or its
// undo), or the flow's OnEnd hook.
type location struct {
	set  bool
	step int
	undo bool
	end  bool
}

// guard tracks which user code runs inside an update's transaction, so that
// after a panic (which rolls the transaction back) a second transaction can
// record that code's failure without running it again.
type guard struct {
	at       location // what is running now
	injected location // what panicked in the previous transaction
	err      error
}

func (g *guard) enter(l location) error {
	if g == nil {
		return nil
	}
	l.set = true
	if g.injected == l {
		return g.err
	}
	g.at = l
	return nil
}

func (g *guard) leave() {
	if g != nil {
		g.at = location{}
	}
}

type panicValue struct{ v any }

// update runs fn on saga id's record in a transaction, if match accepts the
// record, and stores the record. A saga whose flow definition cannot be
// found goes stuck instead. A panic from user code in fn rolls fn's
// transaction back; a second transaction then records that code's failure.
func (r *Runner) update(ctx context.Context, id string, match func(*record) bool, fn func(tx *stm.Tx, rec *record, f flowDef, g *guard) error) error {
	g := &guard{}
	for range 2 {
		p, err := r.catch(func() error {
			return r.db.Run(ctx, func(tx *stm.Tx) error {
				g.at = location{}
				rec, ok := r.sagas.Get(tx, id)
				if !ok || !match(&rec) {
					return errSkip
				}
				f, why := r.flowOf(&rec)
				if f == nil {
					r.stick(tx, id, &rec, rec.Phase, why)
				} else if err := fn(tx, &rec, f, g); err != nil {
					return err
				}
				rec.Updated = time.Now()
				r.sagas.Put(tx, id, rec)
				whilecommit.Do(tx, r.changed)
				return nil
			})
		})
		if p == nil {
			if errors.Is(err, errSkip) {
				return nil
			}
			return err
		}
		if !g.at.set {
			panic(p.v) // not user code of ours: re-raise
		}
		g.injected = g.at
		g.err = fmt.Errorf("panic: %v", p.v)
		r.opts.Logger.Warn("saga: user code panicked; recording it as a failure", "saga", id, "panic", p.v)
	}
	return fmt.Errorf("saga %s: user code panicked again while its panic was recorded", id)
}

func (r *Runner) catch(fn func() error) (p *panicValue, err error) {
	defer func() {
		if v := recover(); v != nil {
			p = &panicValue{v}
		}
	}()
	return nil, fn()
}

// advance moves rec forward from its cursor within tx: it runs local steps
// and undos, skips null compensations, and stops at the first remote call
// (dispatched), the end (OnEnd), or a stuck step. It returns an error only
// when tx cannot go on (the queue refused an entry); step failures are
// recorded in rec.
func (r *Runner) advance(tx *stm.Tx, id string, rec *record, f flowDef, g *guard) error {
	for {
		now := time.Now()
		switch rec.Phase {
		case Running:
			i := rec.Cursor
			if i >= len(rec.Steps) {
				return r.end(tx, id, rec, f, Done, g)
			}
			if f.isRemote(i) {
				return r.dispatch(tx, id, rec)
			}
			state, err := r.runLocal(tx, f, g, i, false, rec.State)
			if err != nil {
				rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvStepFailed, Step: rec.Steps[i].Name, Err: err.Error()})
				if rec.Pivoted {
					r.stick(tx, id, rec, Running, fmt.Sprintf("local step %s failed after the pivot: %v", rec.Steps[i].Name, err))
					return nil
				}
				r.compensate(rec, fmt.Sprintf("local step %s failed: %v", rec.Steps[i].Name, err))
				continue
			}
			r.stepDone(rec, f, state)
		case Compensating:
			i := rec.Cursor
			if i < 0 {
				return r.end(tx, id, rec, f, Compensated, g)
			}
			m := &rec.Steps[i]
			switch {
			case m.Undone:
			case !m.Sent:
				rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvSkipped, Step: m.Name, Note: "never ran"})
			case !f.hasUndo(i):
				rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvSkipped, Step: m.Name, Note: "no undo"})
			case f.isRemote(i):
				return r.dispatch(tx, id, rec)
			default:
				state, err := r.runLocal(tx, f, g, i, true, rec.State)
				if err != nil {
					r.stick(tx, id, rec, Compensating, fmt.Sprintf("undo of local step %s failed: %v", m.Name, err))
					return nil
				}
				rec.State = state
				rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvUndone, Step: m.Name})
			}
			m.Undone = true
			rec.Cursor--
		default:
			return nil
		}
	}
}

func (r *Runner) runLocal(tx *stm.Tx, f flowDef, g *guard, i int, undo bool, state []byte) ([]byte, error) {
	if err := g.enter(location{step: i, undo: undo}); err != nil {
		return nil, err
	}
	out, err := f.local(tx, i, undo, state)
	g.leave() // not deferred: after a panic, g.at names the culprit
	if err == nil && len(out) > r.opts.MaxStateSize {
		err = fmt.Errorf("%w: %d bytes, limit %d", ErrStateTooLarge, len(out), r.opts.MaxStateSize)
	}
	return out, err
}

// stepDone records the success of the forward step at the cursor.
func (r *Runner) stepDone(rec *record, f flowDef, state []byte) {
	i := rec.Cursor
	rec.Steps[i].Sent, rec.Steps[i].Done = true, true
	rec.State = state
	if f.isPivot(i) {
		rec.Pivoted = true
	}
	rec.event(r.opts.MaxHistory, Event{At: time.Now(), Kind: EvStepDone, Step: rec.Steps[i].Name, Attempt: rec.Attempts + 1})
	rec.Cursor++
	rec.resetAttempts()
}

func (rec *record) resetAttempts() {
	rec.Attempts, rec.Ambiguous, rec.LastError, rec.NextAt, rec.Wait = 0, false, "", time.Time{}, waitNone
}

// compensate turns rec around: from the step at the cursor (which failed,
// and is undone too if it may have run), the done steps are undone in
// reverse order.
func (r *Runner) compensate(rec *record, reason string) {
	rec.Phase = Compensating
	rec.Reason = reason
	rec.resetAttempts()
	rec.event(r.opts.MaxHistory, Event{At: time.Now(), Kind: EvCompensate, Err: reason})
	r.opts.Logger.Info("saga: compensating", "flow", rec.Flow, "reason", reason)
}

// end runs OnEnd and records the outcome; a failed OnEnd leaves rec stuck.
func (r *Runner) end(tx *stm.Tx, id string, rec *record, f flowDef, outcome Outcome, g *guard) error {
	err := g.enter(location{end: true})
	if err == nil {
		// OnEnd sees the outcome through Status.
		ended := rec.Clone()
		ended.Phase = outcome
		r.sagas.Put(tx, id, ended)
		err = f.end(tx, id, outcome, rec.State)
		g.leave()
	}
	if err != nil {
		rec.Ending = outcome
		r.stick(tx, id, rec, phaseEnding, fmt.Sprintf("OnEnd(%s) failed: %v", outcome, err))
		return nil
	}
	r.finish(tx, id, rec, outcome)
	return nil
}

// finish records the final outcome.
func (r *Runner) finish(tx *stm.Tx, id string, rec *record, outcome Outcome) {
	rec.Phase, rec.Ending = outcome, ""
	rec.resetAttempts()
	rec.event(r.opts.MaxHistory, Event{At: time.Now(), Kind: EvEnded, Note: string(outcome)})
	var c = &r.counts.done
	switch outcome {
	case Compensated:
		c = &r.counts.compensated
	case Aborted:
		c = &r.counts.aborted
	}
	whilecommit.Do(tx, func() {
		c.Add(1)
		r.opts.Logger.Info("saga: ended", "saga", id, "flow", rec.Flow, "outcome", outcome)
	})
}

// stick leaves rec stuck in phase in, with reason, for an operator.
func (r *Runner) stick(tx *stm.Tx, id string, rec *record, in Phase, reason string) {
	rec.Phase, rec.StuckIn, rec.Reason = Stuck, in, reason
	rec.Wait, rec.NextAt = waitNone, time.Time{}
	step := ""
	if rec.Cursor >= 0 && rec.Cursor < len(rec.Steps) {
		step = rec.Steps[rec.Cursor].Name
	}
	rec.event(r.opts.MaxHistory, Event{At: time.Now(), Kind: EvStuck, Step: step, Err: reason})
	r.stuck.Put(tx, id, stuckMark{})
	snap := rec.Clone()
	whilecommit.Do(tx, func() {
		r.counts.stuck.Add(1)
		r.opts.Logger.Warn("saga: stuck", "saga", id, "flow", snap.Flow, "step", step, "reason", reason)
		if r.opts.OnStuck != nil {
			r.opts.OnStuck(r.info(id, &snap))
		}
	})
}
