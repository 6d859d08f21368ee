package saga

import (
	"slices"
	"time"
)

// Phase is where a saga is in its life. It is a plain string value.
type Phase string

// The phases of a saga. Running and Compensating move on by themselves;
// Stuck waits for an operator; Done, Compensated and Aborted are final.
const (
	Running      Phase = "running"
	Compensating Phase = "compensating"
	Stuck        Phase = "stuck"
	Done         Phase = "done"
	Compensated  Phase = "compensated"
	Aborted      Phase = "aborted"
)

// Final reports whether the phase is an end: Done, Compensated or Aborted.
func (p Phase) Final() bool { return p == Done || p == Compensated || p == Aborted }

// Outcome is how a saga ended: Done, Compensated or Aborted.
type Outcome = Phase

// wait says what a saga that is not final waits for.
type wait uint8

const (
	waitNone    wait = iota // nothing: ready to advance, or final, or stuck
	waitCall                // a dispatched call entry (token) is in the queue
	waitBackoff             // a retry at NextAt
)

// stepMark is the record of one step of one saga.
type stepMark struct {
	Name   string `msgpack:"n"`
	Sent   bool   `msgpack:"s,omitempty"` // forward call dispatched or local step run at least once
	Done   bool   `msgpack:"d,omitempty"` // forward succeeded
	Undone bool   `msgpack:"u,omitempty"` // compensation finished (or skipped)
}

// record is a saga as stored in the durable table.
type record struct {
	Flow    string     `msgpack:"f"`
	Version int        `msgpack:"v"`
	Phase   Phase      `msgpack:"p"`
	StuckIn Phase      `msgpack:"si,omitempty"` // Running, Compensating, or "ending" (OnEnd failed)
	Ending  Phase      `msgpack:"en,omitempty"` // the outcome OnEnd failed to record
	Cursor  int        `msgpack:"c"`
	Steps   []stepMark `msgpack:"st"`
	Pivoted bool       `msgpack:"pv,omitempty"`
	State   []byte     `msgpack:"s"`

	Wait      wait      `msgpack:"w,omitempty"`
	Token     uint64    `msgpack:"t"`
	Attempts  int       `msgpack:"a,omitempty"`
	NextAt    time.Time `msgpack:"n,omitempty"`
	Ambiguous bool      `msgpack:"am,omitempty"`
	LastError string    `msgpack:"e,omitempty"`
	Reason    string    `msgpack:"r,omitempty"`

	History []Event   `msgpack:"h"`
	Dropped int       `msgpack:"hd,omitempty"`
	Created time.Time `msgpack:"ct"`
	Updated time.Time `msgpack:"ut"`
}

// Clone returns a deep copy (the table requires it for slices).
func (r record) Clone() record {
	r.Steps = slices.Clone(r.Steps)
	r.State = slices.Clone(r.State)
	r.History = slices.Clone(r.History)
	return r
}

// phaseEnding is the StuckIn value of a saga whose OnEnd hook failed.
const phaseEnding Phase = "ending"

// Event is one entry of a saga's history. It is a plain value that encodes
// to JSON.
type Event struct {
	At   time.Time `json:"at" msgpack:"at"`
	Kind string    `json:"kind" msgpack:"k"`
	Step string    `json:"step,omitempty" msgpack:"s,omitempty"`
	// Attempt is the attempt's number for call outcomes.
	Attempt int    `json:"attempt,omitempty" msgpack:"a,omitempty"`
	Err     string `json:"error,omitempty" msgpack:"e,omitempty"`
	// Who and Note are set by operators' resolutions.
	Who  string `json:"who,omitempty" msgpack:"w,omitempty"`
	Note string `json:"note,omitempty" msgpack:"o,omitempty"`
}

// The kinds of history events.
const (
	EvStarted     = "started"
	EvStepDone    = "step-done"
	EvStepFailed  = "step-failed"
	EvRetry       = "retry-scheduled"
	EvCompensate  = "compensation-started"
	EvUndone      = "step-compensated"
	EvSkipped     = "undo-skipped"
	EvStuck       = "stuck"
	EvResolved    = "resolved"
	EvEnded       = "ended"
	EvLateIgnored = "late-result-ignored"
)

func (r *record) event(max int, e Event) {
	r.History = append(r.History, e)
	if over := len(r.History) - max; over > 0 {
		// Keep the first event (the start) and the newest ones.
		r.History = append(r.History[:1], r.History[1+over:]...)
		r.Dropped += over
	}
}
