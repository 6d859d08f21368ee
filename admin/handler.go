package admin

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

//go:embed ui
var uiFS embed.FS

// csrfHeader must be on every POST. The page sends it; a cross-site HTML form
// cannot, and a cross-site script cannot without a CORS preflight, which the
// handler never grants.
const csrfHeader = "X-Zest-Admin"

// NewHandler returns the admin handler: the page at RootPath/ and the JSON API
// under RootPath/api/. It has no listener of its own; mount it on the
// application's mux. It returns an error wrapping ErrInvalidOptions for
// Options that cannot work.
func NewHandler(opts *Options) (http.Handler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &handler{opts: o, static: map[string]staticFile{}}
	for name, ctype := range map[string]string{"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"} {
		b, err := fs.ReadFile(uiFS, "ui/"+name)
		if err != nil {
			return nil, err
		}
		h.static["/static/"+name] = staticFile{body: b, ctype: ctype}
	}
	h.addQueueRoutes()
	h.addCoreRoutes()
	for _, s := range o.Sections {
		for _, rt := range s.Routes() {
			h.add(rt.Method, s.Name()+"/"+rt.Pattern, rt.Handle)
		}
	}
	return h, nil
}

// Handler is NewHandler for Options known to be valid: it panics on invalid
// Options, as regexp.MustCompile does on a bad pattern.
func Handler(opts *Options) http.Handler {
	h, err := NewHandler(opts)
	if err != nil {
		panic(err)
	}
	return h
}

// handler is safe for concurrent use: its routes are fixed at construction,
// and the record of actions has its own lock.
type handler struct {
	opts   Options
	static map[string]staticFile // by path under RootPath
	routes []route

	mu struct {
		sync.Mutex
		actions []ActionRecord // newest last, at most maxActions
	}
}

type staticFile struct {
	body  []byte
	ctype string
}

type route struct {
	method string
	segs   []string
	handle func(*Request) (any, error)
}

func (h *handler) add(method, pattern string, fn func(*Request) (any, error)) {
	pattern = strings.Trim(pattern, "/")
	var segs []string
	if pattern != "" {
		segs = strings.Split(pattern, "/")
	}
	h.routes = append(h.routes, route{method: method, segs: segs, handle: fn})
}

// match finds the route for method and path segments. It reports whether some
// route matched the path with another method, for a 405.
func (h *handler) match(method string, segs []string) (*route, map[string]string, bool) {
	pathMatched := false
	for i := range h.routes {
		rt := &h.routes[i]
		if len(rt.segs) != len(segs) {
			continue
		}
		var params map[string]string
		ok := true
		for j, s := range rt.segs {
			if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
				if segs[j] == "" {
					ok = false
					break
				}
				if params == nil {
					params = map[string]string{}
				}
				params[s[1:len(s)-1]] = segs[j]
				continue
			}
			if s != segs[j] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if rt.method == method {
			return rt, params, true
		}
		pathMatched = true
	}
	return nil, nil, pathMatched
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Cache-Control", "no-store")
	allowed, err := h.authorize(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if !allowed {
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zest-admin"`)
			writeError(w, http.StatusUnauthorized, fmt.Errorf("%w: credentials required", ErrUnauthorized))
			return
		}
		writeError(w, http.StatusForbidden, fmt.Errorf("%w: the credentials are not allowed here", ErrForbidden))
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, h.opts.RootPath)
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: %s is outside %s/", ErrNotFound, r.URL.Path, h.opts.RootPath))
		return
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	if !get && h.opts.ReadOnly {
		writeError(w, http.StatusForbidden, fmt.Errorf("%w: this admin handler only answers GET", ErrReadOnly))
		return
	}
	api, isAPI := strings.CutPrefix(rest, "/api/")
	if !isAPI {
		if !get {
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: %s %s", ErrMethod, r.Method, r.URL.Path))
			return
		}
		if rest == "" {
			http.Redirect(w, r, h.opts.RootPath+"/", http.StatusFound)
			return
		}
		if rest == "/" {
			h.servePage(w, r)
			return
		}
		f, ok := h.static[rest]
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Errorf("%w: %s", ErrNotFound, r.URL.Path))
			return
		}
		w.Header().Set("Content-Type", f.ctype)
		w.Write(f.body)
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if method == http.MethodPost && r.Header.Get(csrfHeader) != "1" {
		writeError(w, http.StatusForbidden, fmt.Errorf("%w: a POST needs the header %s: 1 (the page and the zest CLI send it)", ErrForbidden, csrfHeader))
		return
	}
	if ct := r.Header.Get("Content-Type"); method == http.MethodPost && r.ContentLength != 0 && ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("%w: a POST body must be application/json, not %q", ErrBadRequest, ct))
		return
	}
	segs := strings.Split(strings.TrimSuffix(api, "/"), "/")
	if api == "" {
		segs = nil
	}
	rt, params, pathOK := h.match(method, segs)
	if rt == nil {
		if pathOK {
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: %s %s", ErrMethod, r.Method, r.URL.Path))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: no API endpoint %s", ErrNotFound, r.URL.Path))
		return
	}
	actor, err := h.actor(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	req := &Request{HTTP: r, Actor: actor, params: params}
	v, err := h.call(rt, req)
	if method == http.MethodPost {
		h.record(req, err)
	}
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// authorize asks Options.Authorize, turning its panic into an error (the
// request is refused).
func (h *handler) authorize(r *http.Request) (ok bool, err error) {
	if h.opts.Authorize == nil {
		return true, nil
	}
	defer func() {
		if p := recover(); p != nil {
			h.opts.Logger.Error("admin: Authorize panicked", "path", r.URL.Path, "panic", p)
			ok, err = false, fmt.Errorf("admin: internal error: Authorize panicked: %v", p)
		}
	}()
	return h.opts.Authorize(r), nil
}

// actor asks Options.Actor, turning its panic into an error.
func (h *handler) actor(r *http.Request) (a string, err error) {
	defer func() {
		if p := recover(); p != nil {
			h.opts.Logger.Error("admin: Actor panicked", "path", r.URL.Path, "panic", p)
			a, err = "", fmt.Errorf("admin: internal error: Actor panicked: %v", p)
		}
	}()
	return h.opts.Actor(r), nil
}

// call runs a route's handler, turning a panic into a 500: a panicking
// section must not take the application's server down with it.
func (h *handler) call(rt *route, req *Request) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			h.opts.Logger.Error("admin: handler panicked", "path", req.HTTP.URL.Path, "panic", p)
			v, err = nil, fmt.Errorf("admin: internal error: handler panicked: %v", p)
		}
	}()
	return rt.handle(req)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, ErrReadOnly), errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, errorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "admin: encoding the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// ActionRecord is one state-changing request, as the handler recorded it.
// It is a plain value, safe to copy.
type ActionRecord struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Path   string    `json:"path"`
	Note   string    `json:"note,omitempty"`
	Status int       `json:"status"`
	Error  string    `json:"error,omitempty"`
}

const maxActions = 200

func (h *handler) record(req *Request, err error) {
	a := ActionRecord{Time: time.Now().UTC(), Actor: req.Actor, Path: req.HTTP.URL.RequestURI(), Note: req.Note, Status: http.StatusOK}
	level := slog.LevelInfo
	if err != nil {
		a.Status, a.Error, level = statusOf(err), err.Error(), slog.LevelWarn
	}
	h.opts.Logger.Log(req.Context(), level, "admin: action", "actor", a.Actor, "path", a.Path, "note", a.Note, "status", a.Status, "error", a.Error)
	h.mu.Lock()
	h.mu.actions = append(h.mu.actions, a)
	if n := len(h.mu.actions); n > maxActions {
		h.mu.actions = append(h.mu.actions[:0:0], h.mu.actions[n-maxActions:]...)
	}
	h.mu.Unlock()
}

func (h *handler) actions() []ActionRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ActionRecord, len(h.mu.actions))
	for i, a := range h.mu.actions {
		out[len(out)-1-i] = a // newest first
	}
	return out
}
