package idem

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/zest-stm/zest/stm"
)

// DefaultHeader is the request header that carries the key.
const DefaultHeader = "Idempotency-Key"

// ReplayedHeader is set to "true" on a response replayed from a token.
const ReplayedHeader = "Idempotent-Replayed"

// MiddlewareOptions configure Middleware. The zero value of each field
// selects its default; a nil *MiddlewareOptions selects every default.
type MiddlewareOptions struct {
	// Header is the request header that carries the key. Default
	// "Idempotency-Key".
	Header string
	// Scope returns the scope of a request's key: whose key it is, such as
	// the authenticated user, so that two clients' keys never meet.
	// Default: one scope for all requests ("").
	Scope func(r *http.Request) string
	// Scene is the Key's scene for the requests this middleware handles.
	// Default "http".
	Scene string
	// MaxBodySize is the largest request body read, in bytes; a larger
	// one is answered 413. Default 1 MiB.
	MaxBodySize int64
	// Commit decides from the handler's status code whether its
	// transaction commits, storing the response as the token's result.
	// Otherwise the transaction rolls back (the token too) and the
	// response is sent as is: a retry runs the handler again. Default:
	// status < 500.
	Commit func(status int) bool
	// Logger receives the middleware's logs. Default: the Tokens' logger.
	Logger *slog.Logger
}

type ctxKey struct{}

// joined is what Middleware puts in the handler's request context.
type joined struct {
	tx  *stm.Tx
	key Key
}

// TxFrom returns the transaction that Middleware runs the handler in. A
// handler makes its business writes with it, so that they commit together
// with the idempotency token and the stored response.
func TxFrom(ctx context.Context) (*stm.Tx, bool) {
	j, ok := ctx.Value(ctxKey{}).(joined)
	return j.tx, ok
}

// KeyFrom returns the token key of the request Middleware is handling, for
// a handler that links it to an outside operation (Link).
func KeyFrom(ctx context.Context) (Key, bool) {
	j, ok := ctx.Value(ctxKey{}).(joined)
	return j.key, ok
}

// Middleware returns an http middleware that makes a handler idempotent by
// the request's Idempotency-Key header (IETF draft
// "The Idempotency-Key HTTP Header Field"):
//
//   - No key, or an invalid one: 400, the handler does not run.
//   - First request with the key: the handler runs inside a transaction
//     (see TxFrom); its response is buffered and, if Commit(status) holds,
//     stored as the token's result in that same transaction.
//   - Retries with the same key, method, URI and body get the stored status,
//     headers and body, with Idempotent-Replayed: true. The handler does not
//     run.
//   - The same key with another method, URI or body: 422.
//   - The key's token is linked to an outside operation still running: 409.
//   - The handler's response is larger than the Tokens' MaxResultSize: 500,
//     and its writes roll back.
//
// A handler that starts an outside operation (a saga) links the token to
// it: Link(tx, key, ref) with KeyFrom's key. Its own response is sent but
// not stored; retries get 409 until the transaction that ends the
// operation calls Settle with a response made by EncodeResponse, which
// retries then replay.
//
// # How the handler joins the transaction
//
// The handler is called inside db.Run with a request whose context carries
// the *stm.Tx (TxFrom) and whose body is a fresh reader over the bytes
// already read. Because a transaction body may run several times, the
// handler may be called several times for one request: each call gets a new
// response buffer and a new body reader, and only the call whose
// transaction commits is sent. So the handler must follow the rules of a
// transaction body: all its writes go through the Tx (tables, effect queue,
// whilecommit hooks), it does no other I/O, and it writes its response only
// to the ResponseWriter it is given (which does not support Flush or
// Hijack). The response reaches the client after the commit, so a client
// never sees a result that was not committed.
//
// Concurrent duplicates do not get 409: their transactions conflict on the
// token, one commits and the others rerun and replay its response. 409 is
// for tokens linked with Link.
func Middleware(tokens *Tokens, opts *MiddlewareOptions) (func(http.Handler) http.Handler, error) {
	if tokens == nil {
		return nil, errors.New("idem: Middleware: tokens is nil")
	}
	var o MiddlewareOptions
	if opts != nil {
		o = *opts
	}
	var errs []error
	if o.Header == "" {
		o.Header = DefaultHeader
	}
	if o.Scope == nil {
		o.Scope = func(*http.Request) string { return "" }
	}
	if o.Scene == "" {
		o.Scene = "http"
	}
	switch {
	case o.MaxBodySize == 0:
		o.MaxBodySize = 1 << 20
	case o.MaxBodySize < 0:
		errs = append(errs, fmt.Errorf("idem: MiddlewareOptions.MaxBodySize = %d: must be positive", o.MaxBodySize))
	}
	if o.Commit == nil {
		o.Commit = func(status int) bool { return status < 500 }
	}
	if o.Logger == nil {
		o.Logger = tokens.opts.Logger
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		return &middleware{t: tokens, o: o, next: next}
	}, nil
}

type middleware struct {
	t    *Tokens
	o    MiddlewareOptions
	next http.Handler
}

// errNotCommitted rolls back a transaction whose handler answered with a
// status that Commit refuses.
var errNotCommitted = errors.New("idem: handler's status is not committed")

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(m.o.Header)
	if id == "" {
		problem(w, http.StatusBadRequest, "missing "+m.o.Header+" header")
		return
	}
	key := Key{Scope: m.o.Scope(r), ID: id, Scene: m.o.Scene}
	body, err := io.ReadAll(io.LimitReader(r.Body, m.o.MaxBodySize+1))
	if err != nil {
		problem(w, http.StatusBadRequest, "cannot read the request body")
		return
	}
	if int64(len(body)) > m.o.MaxBodySize {
		problem(w, http.StatusRequestEntityTooLarge, "request body over "+strconv.FormatInt(m.o.MaxBodySize, 10)+" bytes")
		return
	}
	fp := Fingerprint([]byte(r.Method), []byte(r.URL.RequestURI()), body)

	var out recorder
	var stored []byte
	var replay bool
	err = m.t.db.Run(r.Context(), func(tx *stm.Tx) error {
		out.reset()
		var err error
		stored, replay, err = m.t.Begin(tx, key, fp)
		if err != nil || replay {
			return err
		}
		req := r.WithContext(context.WithValue(r.Context(), ctxKey{}, joined{tx, key}))
		req.Body = io.NopCloser(bytes.NewReader(body))
		m.next.ServeHTTP(&out, req)
		if !m.o.Commit(out.status()) {
			return errNotCommitted
		}
		err = m.t.Finish(tx, key, out.encode())
		if errors.Is(err, ErrInProgress) {
			// The handler linked the token to an outside operation:
			// retries get 409 until Settle stores the final response.
			return nil
		}
		return err
	})
	switch {
	case err == nil && replay:
		if err := writeStored(w, stored); err != nil {
			m.o.Logger.Error("idem: stored response cannot be decoded", "key", key.String(), "err", err)
			problem(w, http.StatusInternalServerError, "stored response is corrupt")
		}
	case err == nil, errors.Is(err, errNotCommitted):
		out.send(w)
	case errors.Is(err, ErrBadKey):
		problem(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrMismatch):
		problem(w, http.StatusUnprocessableEntity, m.o.Header+" reused with another request")
	case errors.Is(err, ErrInProgress):
		problem(w, http.StatusConflict, "a request with this "+m.o.Header+" is still being processed")
	case errors.Is(err, ErrResultTooLarge):
		m.o.Logger.Error("idem: response too large to store; raise Options.MaxResultSize", "key", key.String(), "err", err)
		problem(w, http.StatusInternalServerError, "the response is too large to store")
	case r.Context().Err() != nil:
		// The client is gone; nothing was committed.
	default:
		m.o.Logger.Error("idem: request failed", "key", key.String(), "err", err)
		problem(w, http.StatusInternalServerError, "the request could not be completed")
	}
}

// problem writes an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"title":  http.StatusText(status),
		"status": status,
		"detail": detail,
	})
}
