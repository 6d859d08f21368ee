package admin

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zest-stm/zest/idem"
)

// IdemSection returns the section of an idempotency token table, named
// "tokens": its counters, the lookup of one token by key (scope, id, scene),
// and forgetting a token, so that the next request with its key runs the
// operation again.
//
//	GET  tokens/counters
//	GET  tokens/token?scope&id&scene
//	POST tokens/forget   {"scope": "...", "id": "...", "scene": "...", "note": "..."}
//
// The section is safe for concurrent use, as the table is.
func IdemSection(t *idem.Tokens) Section {
	if t == nil {
		panic("admin: IdemSection of a nil token table")
	}
	return idemSection{t: t}
}

type idemSection struct{ t *idem.Tokens }

func (s idemSection) Name() string { return "tokens" }

type forgetBody struct {
	Scope string `json:"scope"`
	ID    string `json:"id"`
	Scene string `json:"scene"`
	Note  string `json:"note"`
}

// ForgetResult is the answer of a forget.
// It is a plain value, safe to copy.
type ForgetResult struct {
	Key       idem.Key `json:"key"`
	Forgotten bool     `json:"forgotten"`
}

func (s idemSection) Routes() []Route {
	return []Route{
		{Method: "GET", Pattern: "counters", Handle: func(req *Request) (any, error) {
			if err := onlyParams(req); err != nil {
				return nil, err
			}
			return s.t.Stats(), nil
		}},
		{Method: "GET", Pattern: "token", Handle: func(req *Request) (any, error) {
			if err := onlyParams(req, "scope", "id", "scene"); err != nil {
				return nil, err
			}
			k := idem.Key{Scope: req.Query("scope"), ID: req.Query("id"), Scene: req.Query("scene")}
			if k.ID == "" {
				return nil, fmt.Errorf("%w: a token key needs an id", ErrBadRequest)
			}
			info, err := s.t.Lookup(req.Context(), k)
			if err != nil {
				return nil, idemErr(k, err)
			}
			return info, nil
		}},
		{Method: "POST", Pattern: "forget", Handle: func(req *Request) (any, error) {
			if err := onlyParams(req); err != nil {
				return nil, err
			}
			var b forgetBody
			if err := req.Decode(&b); err != nil {
				return nil, err
			}
			k := idem.Key{Scope: b.Scope, ID: b.ID, Scene: b.Scene}
			if k.ID == "" {
				return nil, fmt.Errorf("%w: a token key needs an id", ErrBadRequest)
			}
			if len(b.Note) > maxNote {
				return nil, fmt.Errorf("%w: the note is %d bytes; at most %d", ErrBadRequest, len(b.Note), maxNote)
			}
			req.Note = strings.TrimSpace(b.Note)
			ok, err := s.t.Discard(req.Context(), k)
			if err != nil {
				return nil, idemErr(k, err)
			}
			if !ok {
				return nil, fmt.Errorf("%w: no token %s", ErrNotFound, k)
			}
			return ForgetResult{Key: k, Forgotten: true}, nil
		}},
	}
}

func idemErr(k idem.Key, err error) error {
	switch {
	case errors.Is(err, idem.ErrNotFound):
		return fmt.Errorf("%w: no token %s", ErrNotFound, k)
	case errors.Is(err, idem.ErrBadKey):
		return fmt.Errorf("%w: token key %s: %v", ErrBadRequest, k, err)
	}
	return fmt.Errorf("admin: token %s: %v", k, err)
}

func (s idemSection) View() View {
	return View{
		Title:    "Idempotency tokens",
		Counters: "counters",
		Lookup: &LookupView{
			Label:  "Token",
			Path:   "token",
			Fields: []Column{{Field: "scope", Label: "scope"}, {Field: "id", Label: "id"}, {Field: "scene", Label: "scene"}},
			Actions: []Action{{Label: "Forget", Path: "forget", Note: true,
				Confirm: "Forget this token? The next request with its key runs the operation again."}},
		},
	}
}
