package saga

import (
	"context"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// sink is the mover.Sink of a Runner: each delivery is one attempt of one
// saga's remote step (or undo).
type sink struct{ r *Runner }

func permanentf(format string, args ...any) error {
	return mover.Permanent(fmt.Errorf(format, args...))
}

// opID is the stable operation id of a step in one direction.
func opID(flow, id, step string, undo bool) string {
	dir := "do"
	if undo {
		dir = "undo"
	}
	return flow + "/" + id + "/" + step + "/" + dir
}

// result is what one attempt brought back.
type result struct {
	state []byte // the state after a success
	err   error  // nil: success
	class Class
}

// Apply makes one attempt of the call the entry dispatched, if the saga
// still waits for it, and records the outcome in a transaction that also
// runs the next local steps and dispatches the next call. A stale or
// duplicate entry is dropped. Apply returns an error only when the outcome
// could not be recorded (the mover then delivers the entry again, and the
// call is repeated with the same operation id), or ctx.Err() at shutdown
// (the attempt is not counted).
func (s sink) Apply(ctx context.Context, d mover.Delivery) error {
	r := s.r
	var msg callMsg
	if err := msgpack.Unmarshal(d.Payload, &msg); err != nil || msg.ID == "" {
		return permanentf("saga: undecodable call entry %d: %v", d.Seq, err)
	}
	match := func(rec *record) bool { return rec.Wait == waitCall && rec.Token == msg.Token }

	// Read what to call.
	var rec record
	var found bool
	if err := r.db.Run(ctx, func(tx *stm.Tx) error {
		rec, found = r.sagas.Get(tx, msg.ID)
		return nil
	}); err != nil {
		return err
	}
	if !found || !match(&rec) {
		r.opts.Logger.Debug("saga: stale call entry dropped", "saga", msg.ID, "token", msg.Token)
		return nil
	}
	f, _ := r.flowOf(&rec)
	if f == nil {
		// update sticks it with the reason.
		return r.update(ctx, msg.ID, match, func(*stm.Tx, *record, flowDef, *guard) error { return errSkip })
	}
	i := rec.Cursor
	undo := rec.Phase == Compensating
	c := Call{
		Saga:          msg.ID,
		Step:          rec.Steps[i].Name,
		OpID:          opID(rec.Flow, msg.ID, rec.Steps[i].Name, undo),
		Attempt:       rec.Attempts + 1,
		Undo:          undo,
		MayHaveLanded: rec.Ambiguous || d.MayHaveLanded,
	}
	res := s.attempt(ctx, f, i, c, rec.State)
	if ctx.Err() != nil {
		return ctx.Err() // shutdown: not the step's fault; the entry is applied again
	}
	return r.update(ctx, msg.ID, match, func(tx *stm.Tx, rec *record, f flowDef, g *guard) error {
		return r.record(tx, msg.ID, rec, f, g, c, res)
	})
}

// attempt asks the step's query first when the call may have landed, and
// otherwise (or if it did not land) calls.
func (s sink) attempt(ctx context.Context, f flowDef, i int, c Call, state []byte) result {
	timeout := f.timeout(i, s.r.opts.Timeout)
	if c.MayHaveLanded && f.hasQuery(i) {
		qctx, cancel := context.WithTimeout(ctx, timeout)
		landed, out, err := f.call(qctx, i, c, state, true)
		cancel()
		switch {
		case err != nil:
			s.r.opts.Logger.Debug("saga: query failed", "saga", c.Saga, "op", c.OpID, "err", err)
			return result{err: fmt.Errorf("query: %w", err), class: queryClass(f, i, err)}
		case landed:
			return result{state: out}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	_, out, err := f.call(cctx, i, c, state, false)
	s.r.opts.Logger.Debug("saga: call", "saga", c.Saga, "op", c.OpID, "attempt", c.Attempt, "took", time.Since(start), "err", err)
	if err != nil {
		return result{err: err, class: f.classify(i, err)}
	}
	return result{state: out}
}

// queryClass: a failed query leaves the call as uncertain as before, unless
// it says the question itself is wrong.
func queryClass(f flowDef, i int, err error) Class {
	if f.classify(i, err) == ClassPermanent {
		return ClassPermanent
	}
	return ClassAmbiguous
}

// record writes the outcome of an attempt into rec and moves the saga on.
func (r *Runner) record(tx *stm.Tx, id string, rec *record, f flowDef, g *guard, c Call, res result) error {
	i := rec.Cursor
	now := time.Now()
	if res.err == nil && len(res.state) > r.opts.MaxStateSize {
		res = result{err: fmt.Errorf("%w: %d bytes after the call, limit %d", ErrStateTooLarge, len(res.state), r.opts.MaxStateSize), class: ClassPermanent}
	}
	if res.err == nil {
		if c.Undo {
			rec.Steps[i].Undone = true
			rec.State = res.state
			rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvUndone, Step: c.Step, Attempt: c.Attempt})
			rec.Cursor--
			rec.resetAttempts()
		} else {
			r.stepDone(rec, f, res.state)
		}
		return r.advance(tx, id, rec, f, g)
	}
	rec.Attempts++
	rec.LastError = res.err.Error()
	if res.class == ClassAmbiguous {
		rec.Ambiguous = true
	}
	rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvStepFailed, Step: c.Step, Attempt: c.Attempt, Err: res.class.String() + ": " + res.err.Error()})
	policy := f.retry(i, r.opts.Retry)
	if res.class != ClassPermanent && rec.Attempts < policy.MaxAttempts {
		wait := policy.backoff(rec.Attempts)
		rec.Wait, rec.NextAt = waitBackoff, now.Add(wait)
		rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvRetry, Step: c.Step, Attempt: rec.Attempts + 1})
		t := timer{at: rec.NextAt, id: id, token: rec.Token}
		whilecommit.Do(tx, func() { r.timers.add(t) })
		return nil
	}
	why := fmt.Sprintf("step %s", c.Step)
	if c.Undo {
		why = "undo of " + why
	}
	if res.class == ClassPermanent {
		why += " failed permanently: " + res.err.Error()
	} else {
		why += fmt.Sprintf(" gave up after %d attempts: %v", rec.Attempts, res.err)
	}
	switch {
	case c.Undo:
		r.stick(tx, id, rec, Compensating, why)
	case rec.Pivoted:
		r.stick(tx, id, rec, Running, why+" (after the pivot: no compensation)")
	default:
		r.compensate(rec, why)
		return r.advance(tx, id, rec, f, g)
	}
	return nil
}
