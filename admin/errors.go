package admin

import "errors"

// The errors below classify what went wrong with an admin request. Handlers
// and sections wrap them with %w and a sentence saying what exactly was
// wrong; the handler answers with the matching HTTP status and the whole
// message as {"error": "..."}.
var (
	// ErrInvalidOptions is returned by NewHandler for Options that cannot
	// work; the message names the field.
	ErrInvalidOptions = errors.New("admin: invalid options")
	// ErrBadRequest is a malformed request: a bad parameter, paging value
	// or body (HTTP 400).
	ErrBadRequest = errors.New("admin: bad request")
	// ErrNotFound is an unknown queue, entry, section item or path (HTTP
	// 404).
	ErrNotFound = errors.New("admin: not found")
	// ErrConflict is an action that does not fit the item's state, such as
	// replaying an entry that is pending rather than dead-lettered (HTTP
	// 409).
	ErrConflict = errors.New("admin: conflict")
	// ErrReadOnly is a state-changing request to a handler with
	// Options.ReadOnly set (HTTP 403).
	ErrReadOnly = errors.New("admin: read-only")
	// ErrForbidden is a request refused by Options.Authorize that carried
	// credentials, or a POST without the X-Zest-Admin header (HTTP 403).
	ErrForbidden = errors.New("admin: forbidden")
	// ErrUnauthorized is a request refused by Options.Authorize that
	// carried no Authorization header (HTTP 401).
	ErrUnauthorized = errors.New("admin: unauthorized")
	// ErrMethod is a method the path does not serve (HTTP 405).
	ErrMethod = errors.New("admin: method not allowed")
	// ErrUnsupported is an action that a section's package does not offer
	// (HTTP 501).
	ErrUnsupported = errors.New("admin: not supported")
)
