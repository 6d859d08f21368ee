package admin

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zest-stm/zest/saga"
)

// SagaSection returns the section of a saga runner, named "sagas": its
// counters, the stuck sagas (paged by id), one saga's record, and the
// resolution of a stuck one (retry, skip or abort) with a note, recorded in
// the saga's history with the request's actor as who.
//
//	GET  sagas/counters
//	GET  sagas/stuck?after&limit
//	GET  sagas/saga/{id}            (or sagas/saga?id=...)
//	POST sagas/saga/{id}/resolve   {"action": "retry"|"skip"|"abort", "note": "..."}
//
// The section is safe for concurrent use, as the runner is.
func SagaSection(r *saga.Runner) Section {
	if r == nil {
		panic("admin: SagaSection of a nil runner")
	}
	return sagaSection{r: r}
}

type sagaSection struct{ r *saga.Runner }

func (s sagaSection) Name() string { return "sagas" }

// StuckSaga is one row of the stuck sagas list.
// It is a plain value, safe to copy.
type StuckSaga struct {
	ID        string    `json:"id"`
	Flow      string    `json:"flow"`
	Version   int       `json:"version"`
	StuckIn   string    `json:"stuckIn"`
	Step      string    `json:"step"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lastError,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Updated   time.Time `json:"updated"`
}

// maxNote bounds a resolution's note.
const maxNote = 2000

func (s sagaSection) Routes() []Route {
	return []Route{
		{Method: "GET", Pattern: "counters", Handle: func(req *Request) (any, error) {
			if err := onlyParams(req); err != nil {
				return nil, err
			}
			return s.r.Counters(), nil
		}},
		{Method: "GET", Pattern: "stuck", Handle: s.stuck},
		{Method: "GET", Pattern: "saga/{id}", Handle: func(req *Request) (any, error) {
			if err := onlyParams(req); err != nil {
				return nil, err
			}
			return s.inspect(req, req.Param("id"))
		}},
		// The page's lookup form: the id in the query string.
		{Method: "GET", Pattern: "saga", Handle: func(req *Request) (any, error) {
			if err := onlyParams(req, "id"); err != nil {
				return nil, err
			}
			return s.inspect(req, req.Query("id"))
		}},
		{Method: "POST", Pattern: "saga/{id}/resolve", Handle: s.resolve},
	}
}

func (s sagaSection) inspect(req *Request, id string) (any, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: a saga id is required", ErrBadRequest)
	}
	info, err := s.r.Inspect(req.Context(), id)
	if err != nil {
		return nil, sagaErr(id, err)
	}
	return info, nil
}

func (s sagaSection) stuck(req *Request) (any, error) {
	if err := onlyParams(req, "after", "limit"); err != nil {
		return nil, err
	}
	after, limit, err := req.Paging(100)
	if err != nil {
		return nil, err
	}
	infos, err := s.r.ListStuck(req.Context(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("admin: listing stuck sagas: %w", err)
	}
	p := Page[StuckSaga]{Items: make([]StuckSaga, 0, len(infos))}
	for _, in := range infos {
		p.Items = append(p.Items, StuckSaga{ID: in.ID, Flow: in.Flow, Version: in.Version, StuckIn: string(in.StuckIn),
			Step: in.Step, Attempts: in.Attempts, LastError: in.LastError, Reason: in.Reason, Updated: in.Updated})
	}
	if len(infos) == limit {
		p.Next = infos[len(infos)-1].ID
	}
	return p, nil
}

type resolveBody struct {
	Action string `json:"action"`
	Note   string `json:"note"`
}

func (s sagaSection) resolve(req *Request) (any, error) {
	if err := onlyParams(req); err != nil {
		return nil, err
	}
	var b resolveBody
	if err := req.Decode(&b); err != nil {
		return nil, err
	}
	var a saga.Action
	switch b.Action {
	case "retry":
		a = saga.ActionRetry
	case "skip":
		a = saga.ActionSkip
	case "abort":
		a = saga.ActionAbort
	default:
		return nil, fmt.Errorf(`%w: action %q is not "retry", "skip" or "abort"`, ErrBadRequest, b.Action)
	}
	if strings.TrimSpace(b.Note) == "" {
		return nil, fmt.Errorf("%w: a resolution needs a note saying why", ErrBadRequest)
	}
	if len(b.Note) > maxNote {
		return nil, fmt.Errorf("%w: the note is %d bytes; at most %d", ErrBadRequest, len(b.Note), maxNote)
	}
	req.Note = b.Note
	id := req.Param("id")
	if err := s.r.Resolve(req.Context(), id, saga.Resolution{Action: a, Who: req.Actor, Note: b.Note}); err != nil {
		return nil, sagaErr(id, err)
	}
	info, err := s.r.Inspect(req.Context(), id)
	if err != nil {
		return nil, sagaErr(id, err)
	}
	return info, nil
}

// sagaErr maps the saga package's errors to the admin's.
func sagaErr(id string, err error) error {
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return fmt.Errorf("%w: no saga %q", ErrNotFound, id)
	case errors.Is(err, saga.ErrNotStuck):
		return fmt.Errorf("%w: saga %q is not stuck; nothing changed", ErrConflict, id)
	case errors.Is(err, saga.ErrBadAction), errors.Is(err, saga.ErrBadID):
		return fmt.Errorf("%w: saga %q: %v", ErrBadRequest, id, err)
	}
	return fmt.Errorf("admin: saga %q: %v", id, err)
}

func (s sagaSection) View() View {
	act := func(label, action, confirm string) Action {
		return Action{Label: label, Path: "saga/{id}/resolve", Confirm: confirm, Note: true, Body: map[string]any{"action": action}}
	}
	return View{
		Title:    "Sagas",
		Counters: "counters",
		List: &ListView{
			Path: "stuck",
			Columns: []Column{{Field: "id", Label: "stuck saga"}, {Field: "flow", Label: "flow"}, {Field: "stuckIn", Label: "stuck in"},
				{Field: "step", Label: "step"}, {Field: "attempts", Label: "attempts"}, {Field: "reason", Label: "reason"}, {Field: "lastError", Label: "last error"}},
			Actions: []Action{
				act("Retry", "retry", "Retry the stuck step of this saga now, with its attempts reset?"),
				act("Skip", "skip", "Mark the stuck step done (or undone) and move on? Only if you fixed it by hand."),
				act("Abort", "abort", "Abort this saga for good? It ends Aborted with your note as the reason."),
			},
		},
		Lookup: &LookupView{Label: "Saga", Path: "saga", Fields: []Column{{Field: "id", Label: "saga id"}}},
	}
}
