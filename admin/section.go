package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// A Section is a panel of the admin page with its own JSON API, for a
// package that has something for operators (package saga's stuck sagas,
// package idem's tokens). The handler serves a section's routes under
// RootPath/api/<Name>/, after authorization, the read-only check and the CSRF
// check, and renders its View on the page.
//
// A Section is called concurrently from the handler's requests.
type Section interface {
	// Name is the section's URL segment and key (letters, digits, '-',
	// '_', '.').
	Name() string
	// Routes are the section's endpoints.
	Routes() []Route
	// View says how the page shows the section.
	View() View
}

// A Route is one endpoint of a Section.
// It is a plain value, safe to copy.
type Route struct {
	// Method is "GET" (must not change anything) or "POST".
	Method string
	// Pattern is the path under the section, segments separated by '/';
	// a segment "{name}" matches any one segment, read with Request.Param.
	// "" is the section's root.
	Pattern string
	// Handle answers the request with a value encoded as JSON, or an
	// error wrapping ErrBadRequest, ErrNotFound, ErrConflict or
	// ErrUnsupported (any other error is a 500).
	Handle func(r *Request) (any, error)
}

// Request is what a Route's Handle gets: the HTTP request, its path
// parameters, and who made it. It is used by one goroutine.
type Request struct {
	// HTTP is the underlying request.
	HTTP *http.Request
	// Actor names who made the request (Options.Actor).
	Actor string
	// Note, set by a route, is recorded with the action (the operator's
	// reason).
	Note   string
	params map[string]string
}

// Context returns the request's context.
func (r *Request) Context() context.Context { return r.HTTP.Context() }

// Param returns the path segment matched by "{name}" in the route's pattern.
func (r *Request) Param(name string) string { return r.params[name] }

// Query returns the query parameter name ("" when absent).
func (r *Request) Query(name string) string { return r.HTTP.URL.Query().Get(name) }

// maxBody bounds a request body.
const maxBody = 64 << 10

// Decode reads the JSON body into v. An empty body leaves v as it is. Unknown
// fields, trailing data and bodies over 64 KiB are errors wrapping
// ErrBadRequest.
func (r *Request) Decode(v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.HTTP.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
	if len(body) == 0 {
		return nil
	}
	if err := decodeStrict(body, v); err != nil {
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	return nil
}

func decodeStrict(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// Paging reads the "after" and "limit" query parameters shared by list
// endpoints: after is a cursor (default ""), limit 1..1000 (default def).
func (r *Request) Paging(def int) (after string, limit int, err error) {
	q := r.HTTP.URL.Query()
	after = q.Get("after")
	limit = def
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return "", 0, fmt.Errorf("%w: limit %q is not a number from 1 to %d", ErrBadRequest, s, maxLimit)
		}
		limit = n
	}
	return after, limit, nil
}

const maxLimit = 1000

// Page is the answer of a list endpoint: the items and, when there may be
// more, the cursor to pass as "after" for the next page.
// It is a plain value, safe to copy.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// View says how the page shows a Section. Every path is relative to the
// section's API root and must name one of its Routes.
// It is a plain value, safe to copy.
type View struct {
	// Title heads the section's panel.
	Title string
	// Counters, when set, is a GET path answering a JSON object of
	// numbers, shown as a row of counters.
	Counters string
	// List, when set, is a table of items with actions on each row.
	List *ListView
	// Lookup, when set, is a form that fetches one item by a key the
	// operator types, and offers actions on it.
	Lookup *LookupView
}

// ListView is a table of a Section's items.
// It is a plain value, safe to copy.
type ListView struct {
	// Path is a GET path answering a Page.
	Path string `json:"path"`
	// Columns are the item fields shown, in order.
	Columns []Column `json:"columns"`
	// Actions are offered on each row.
	Actions []Action `json:"actions,omitempty"`
}

// Column is one field of an item shown in a table.
// It is a plain value, safe to copy.
type Column struct {
	Field string `json:"field"`
	Label string `json:"label"`
}

// LookupView is a form that fetches one item by the fields an operator
// types, and offers actions on it.
// It is a plain value, safe to copy.
type LookupView struct {
	// Label names the form ("Look up a token").
	Label string `json:"label"`
	// Path is a GET path; the fields go in its query string.
	Path string `json:"path"`
	// Fields are the form's inputs, by query parameter name.
	Fields []Column `json:"fields"`
	// Actions are offered on the item found; their body carries the
	// fields too.
	Actions []Action `json:"actions,omitempty"`
}

// Action is a button that POSTs to a Section's route after the operator
// confirms it.
// It is a plain value, safe to copy.
type Action struct {
	// Label is the button's text.
	Label string `json:"label"`
	// Path is a POST path; "{field}" is replaced by the item's field
	// (path-escaped).
	Path string `json:"path"`
	// Confirm is the question asked before acting.
	Confirm string `json:"confirm"`
	// Note, when set, asks the operator for a note, sent as "note".
	Note bool `json:"note,omitempty"`
	// Body holds fixed fields sent with the action (e.g. {"action":
	// "retry"}).
	Body map[string]any `json:"body,omitempty"`
}
