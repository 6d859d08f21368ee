package saga

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// Status is a saga's progress in brief. It is a plain value.
type Status struct {
	Flow    string `json:"flow"`
	Version int    `json:"version"`
	Phase   Phase  `json:"phase"`
	// Step is the step at the cursor ("" once past the last one).
	Step string `json:"step,omitempty"`
}

// Info is everything recorded about a saga, for operators. It is a plain
// value that encodes to JSON.
type Info struct {
	ID      string `json:"id"`
	Flow    string `json:"flow"`
	Version int    `json:"version"`
	Phase   Phase  `json:"phase"`
	// StuckIn is the phase a stuck saga stopped in: running, compensating,
	// or "ending" (its OnEnd hook failed).
	StuckIn Phase `json:"stuck_in,omitempty"`
	// Step and StepIndex are the cursor: the step being done (running) or
	// undone (compensating).
	Step      string `json:"step,omitempty"`
	StepIndex int    `json:"step_index"`
	// Steps lists each step with what happened to it.
	Steps   []StepInfo `json:"steps"`
	Pivoted bool       `json:"pivoted,omitempty"`
	// Attempts counts the failed attempts of the current step; NextRetry
	// is when the next one is due, if one is scheduled; InFlight says a call
	// is dispatched.
	Attempts  int        `json:"attempts"`
	NextRetry *time.Time `json:"next_retry,omitempty"`
	InFlight  bool       `json:"in_flight,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	// Reason says why the saga compensates, is stuck, or was aborted.
	Reason string `json:"reason,omitempty"`
	// State is the saga's state, decoded generically (maps and values).
	State   any       `json:"state"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// History is the saga's events, oldest first; HistoryDropped counts
	// events dropped beyond Options.MaxHistory.
	History        []Event `json:"history"`
	HistoryDropped int     `json:"history_dropped,omitempty"`
}

// StepInfo is one step of a saga as Info shows it. It is a plain value.
type StepInfo struct {
	Name   string `json:"name"`
	Sent   bool   `json:"sent"`
	Done   bool   `json:"done"`
	Undone bool   `json:"undone"`
}

// Counters counts a runner's sagas, from its durable records: Started is
// every saga recorded, Running those moving on by themselves, Stuck those
// waiting for an operator. It is a plain value.
type Counters struct {
	Started     int64 `json:"started"`
	Running     int64 `json:"running"`
	Done        int64 `json:"done"`
	Compensated int64 `json:"compensated"`
	Aborted     int64 `json:"aborted"`
	Stuck       int64 `json:"stuck"`
}

func (rec *record) status() Status {
	s := Status{Flow: rec.Flow, Version: rec.Version, Phase: rec.Phase}
	if rec.Cursor >= 0 && rec.Cursor < len(rec.Steps) {
		s.Step = rec.Steps[rec.Cursor].Name
	}
	return s
}

// Status returns saga id's status as tx sees it, or ErrNotFound. Use it
// inside a transaction (an idempotency token's "in progress" answer, say).
func (r *Runner) Status(tx *stm.Tx, id string) (Status, error) {
	if err := tx.Err(); err != nil {
		return Status{}, err
	}
	if tx.DB() != r.db {
		return Status{}, ErrWrongDB
	}
	rec, ok := r.sagas.Get(tx, id)
	if !ok {
		return Status{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return rec.status(), nil
}

// Get returns everything recorded about saga id as tx sees it, or
// ErrNotFound.
func (r *Runner) Get(tx *stm.Tx, id string) (Info, error) {
	if err := tx.Err(); err != nil {
		return Info{}, err
	}
	if tx.DB() != r.db {
		return Info{}, ErrWrongDB
	}
	rec, ok := r.sagas.Get(tx, id)
	if !ok {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return r.info(id, &rec), nil
}

// Inspect is Get in a transaction of its own, for callers outside
// transactions (the admin API).
func (r *Runner) Inspect(ctx context.Context, id string) (Info, error) {
	return stm.RunValue(ctx, r.db, func(tx *stm.Tx) (Info, error) { return r.Get(tx, id) })
}

func (r *Runner) info(id string, rec *record) Info {
	in := Info{
		ID: id, Flow: rec.Flow, Version: rec.Version, Phase: rec.Phase, StuckIn: rec.StuckIn,
		StepIndex: rec.Cursor, Pivoted: rec.Pivoted, Attempts: rec.Attempts, InFlight: rec.Wait == waitCall,
		LastError: rec.LastError, Reason: rec.Reason, Created: rec.Created, Updated: rec.Updated,
		History: slices.Clone(rec.History), HistoryDropped: rec.Dropped,
	}
	in.Step = rec.status().Step
	if rec.Wait == waitBackoff {
		t := rec.NextAt
		in.NextRetry = &t
	}
	for _, m := range rec.Steps {
		in.Steps = append(in.Steps, StepInfo{Name: m.Name, Sent: m.Sent, Done: m.Done, Undone: m.Undone})
	}
	var st any
	if err := msgpack.Unmarshal(rec.State, &st); err == nil {
		in.State = st
	}
	return in
}

// ListStuck returns up to limit stuck sagas whose ids sort after after
// ("" for the first page), in id order. Pass the last id of a page as after
// to get the next. limit ≤ 0 means 100.
func (r *Runner) ListStuck(ctx context.Context, after string, limit int) ([]Info, error) {
	if limit <= 0 {
		limit = 100
	}
	return stm.RunValue(ctx, r.db, func(tx *stm.Tx) ([]Info, error) {
		var ids []string
		r.stuck.Scan(tx, func(id string, _ stuckMark) bool {
			if id > after {
				ids = append(ids, id)
			}
			return true
		})
		slices.Sort(ids)
		if len(ids) > limit {
			ids = ids[:limit]
		}
		out := make([]Info, 0, len(ids))
		for _, id := range ids {
			if rec, ok := r.sagas.Get(tx, id); ok {
				out = append(out, r.info(id, &rec))
			}
		}
		return out, nil
	})
}

// Counters returns the runner's counters. It does not block.
func (r *Runner) Counters() Counters {
	c := Counters{
		Started:     r.counts.started.Load(),
		Done:        r.counts.done.Load(),
		Compensated: r.counts.compensated.Load(),
		Aborted:     r.counts.aborted.Load(),
		Stuck:       r.counts.stuck.Load(),
	}
	c.Running = c.Started - c.Done - c.Compensated - c.Aborted - c.Stuck
	return c
}

// Action is what an operator does with a stuck saga. It is a plain string
// value.
type Action string

// The resolutions of a stuck saga.
const (
	// ActionRetry tries the stuck step again now, with its attempts reset (or
	// OnEnd again, for a saga stuck while ending).
	ActionRetry Action = "retry"
	// ActionSkip marks the stuck step done (running) or undone (compensating) and
	// moves on; for a saga stuck while ending, it ends without OnEnd.
	ActionSkip Action = "skip"
	// ActionAbort stops the saga for good: it ends Aborted, with the note as its
	// reason, and OnEnd runs with outcome Aborted.
	ActionAbort Action = "abort"
)

// Resolution is an operator's decision about one stuck saga. It is a plain
// value that decodes from JSON.
type Resolution struct {
	Action Action `json:"action"`
	// Who made the decision. Required.
	Who string `json:"who"`
	// Note says why.
	Note string `json:"note,omitempty"`
}

// Resolve applies res to stuck saga id in a transaction of its own, and
// records it (who, note) in the saga's history. It returns ErrNotFound,
// ErrNotStuck (the saga is not stuck: nothing changes), or ErrBadAction
// (unknown action, no Who, or a Retry or Skip of a saga whose flow
// definition still cannot be found), and ctx.Err() if ctx ends first.
func (r *Runner) Resolve(ctx context.Context, id string, res Resolution) error {
	switch res.Action {
	case ActionRetry, ActionSkip, ActionAbort:
	default:
		return fmt.Errorf("%w: unknown action %q", ErrBadAction, res.Action)
	}
	if res.Who == "" {
		return fmt.Errorf("%w: Resolution.Who is empty", ErrBadAction)
	}
	g := &guard{}
	for range 2 {
		p, err := r.catch(func() error {
			return r.db.Run(ctx, func(tx *stm.Tx) error { return r.resolve(tx, id, res, g) })
		})
		if p == nil {
			return err
		}
		if !g.at.set {
			panic(p.v)
		}
		g.injected, g.err = g.at, fmt.Errorf("panic: %v", p.v)
	}
	return fmt.Errorf("saga %s: user code panicked again while its panic was recorded", id)
}

func (r *Runner) resolve(tx *stm.Tx, id string, res Resolution, g *guard) error {
	g.at = location{}
	rec, ok := r.sagas.Get(tx, id)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if rec.Phase != Stuck {
		return fmt.Errorf("%w: %q is %s", ErrNotStuck, id, rec.Phase)
	}
	f, why := r.flowOf(&rec)
	if f == nil && res.Action != ActionAbort {
		return fmt.Errorf("%w: %s: %s", ErrBadAction, res.Action, why)
	}
	rec.event(r.opts.MaxHistory, Event{At: time.Now(), Kind: EvResolved, Step: rec.status().Step, Who: res.Who, Note: string(res.Action) + ": " + res.Note})
	r.stuck.Delete(tx, id)
	whilecommit.Do(tx, func() {
		r.counts.stuck.Add(-1)
		r.opts.Logger.Info("saga: resolved", "saga", id, "action", res.Action, "who", res.Who, "note", res.Note)
	})
	in := rec.StuckIn
	rec.Phase, rec.StuckIn, rec.Reason = in, "", ""
	if in == phaseEnding {
		rec.Phase = Running
		if rec.Ending == Compensated {
			rec.Phase = Compensating
		}
	}
	rec.resetAttempts()
	var err error
	switch res.Action {
	case ActionAbort:
		rec.Reason = res.Note
		if f != nil {
			if err = f.end(tx, id, Aborted, rec.State); err != nil {
				return fmt.Errorf("saga: abort %q: OnEnd: %w", id, err)
			}
		}
		r.finish(tx, id, &rec, Aborted)
	case ActionRetry:
		if in == phaseEnding {
			err = r.end(tx, id, &rec, f, rec.Ending, g)
		} else {
			err = r.advance(tx, id, &rec, f, g)
		}
	case ActionSkip:
		switch in {
		case phaseEnding:
			r.finish(tx, id, &rec, rec.Ending)
		case Running:
			if rec.Cursor < len(rec.Steps) {
				r.stepDone(&rec, f, rec.State)
			}
			err = r.advance(tx, id, &rec, f, g)
		case Compensating:
			if rec.Cursor >= 0 {
				rec.Steps[rec.Cursor].Undone = true
				rec.Cursor--
			}
			err = r.advance(tx, id, &rec, f, g)
		}
	}
	if err != nil {
		return err
	}
	rec.Updated = time.Now()
	r.sagas.Put(tx, id, rec)
	whilecommit.Do(tx, r.changed)
	return nil
}
