package admin

import (
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
)

// Options configure the admin handler. A nil *Options selects every default:
// a handler at "/" with no queues, no engine stats and no sections, which is
// valid but shows nothing.
// It is a plain value, safe to copy.
type Options struct {
	// RootPath is the path the application mounts the handler at, without
	// a trailing slash ("/admin"); the handler serves RootPath/ (the page)
	// and RootPath/api/... and answers 404 for anything else. Mount it with
	// mux.Handle(RootPath+"/", h). Default "" (the root).
	RootPath string
	// ReadOnly refuses every request other than GET and HEAD with 403, and
	// the page offers no actions. Default false.
	ReadOnly bool
	// Authorize, when set, is asked about every request, the page
	// included, before anything else. A refused request is answered 401
	// (with WWW-Authenticate: Bearer) if it carried no Authorization
	// header, and 403 if it did. Default nil: every request is allowed, so
	// mount the handler only where its clients are trusted (a loopback or
	// private listener).
	Authorize func(*http.Request) bool
	// Actor names who made a request, for the record of actions and the
	// "who" of a saga resolution. Default: the X-Zest-Actor header (the zest
	// CLI sends $USER) when present, else the request's remote address.
	Actor func(*http.Request) string
	// DB, when set, shows the engine's statistics (commits, reruns by
	// cause, serial-mode entries, conflicts per table). Default nil.
	DB *stm.DB
	// Queues are the effect queues shown, by name (a URL segment: letters,
	// digits, '-', '_', '.'). Default none.
	Queues map[string]*effectqueue.Queue
	// Movers are the movers of those queues, by the queue's name. A queue
	// without a mover is shown without lanes and without pause/resume.
	// Default none.
	Movers map[string]*mover.Mover
	// FormatPayload, when set, renders an entry's payload for people (for
	// example, decoding a msgpack body to JSON). ok=false, an error or a
	// panic falls back to the default rendering: UTF-8 text as text,
	// anything else as base64 (or hex on request). Default nil.
	FormatPayload func(it effectqueue.Item) (text string, ok bool)
	// MaxPayload caps the bytes of a payload shown by the inspect
	// endpoints; longer payloads are cut and marked truncated. Default
	// 64 KiB.
	MaxPayload int
	// Sections add their own API and panel to the page (see Section;
	// SagaSection and IdemSection are the built-in ones). Section names
	// must be distinct URL segments and not "queues", "stats", "actions"
	// or "overview". Default none.
	Sections []Section
	// RefreshInterval is how often the page refreshes itself, in
	// milliseconds. Default 2000.
	RefreshInterval int
	// Logger receives one Info record per action (who, what, result) and
	// Warn records for failed actions. Default slog.Default().
	Logger *slog.Logger
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

var reservedNames = map[string]bool{"queues": true, "stats": true, "actions": true, "overview": true}

// withDefaults returns a validated copy of o with its defaults filled in.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	if c.RootPath != "" {
		if !strings.HasPrefix(c.RootPath, "/") || strings.HasSuffix(c.RootPath, "/") {
			return c, fmt.Errorf("%w: RootPath %q must start with '/' and not end with one", ErrInvalidOptions, c.RootPath)
		}
	}
	if c.MaxPayload < 0 {
		return c, fmt.Errorf("%w: MaxPayload %d is negative", ErrInvalidOptions, c.MaxPayload)
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 64 << 10
	}
	if c.RefreshInterval < 0 {
		return c, fmt.Errorf("%w: RefreshInterval %d is negative", ErrInvalidOptions, c.RefreshInterval)
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 2000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Actor == nil {
		c.Actor = defaultActor
	}
	qs := make(map[string]*effectqueue.Queue, len(c.Queues))
	for name, q := range c.Queues {
		if !nameRE.MatchString(name) {
			return c, fmt.Errorf("%w: Queues name %q is not a URL segment (letters, digits, '-', '_', '.')", ErrInvalidOptions, name)
		}
		if q == nil {
			return c, fmt.Errorf("%w: Queues[%q] is nil", ErrInvalidOptions, name)
		}
		qs[name] = q
	}
	c.Queues = qs
	ms := make(map[string]*mover.Mover, len(c.Movers))
	for name, m := range c.Movers {
		if _, ok := qs[name]; !ok {
			return c, fmt.Errorf("%w: Movers[%q] has no queue of that name in Queues", ErrInvalidOptions, name)
		}
		if m == nil {
			return c, fmt.Errorf("%w: Movers[%q] is nil", ErrInvalidOptions, name)
		}
		ms[name] = m
	}
	c.Movers = ms
	seen := map[string]bool{}
	secs := make([]Section, 0, len(c.Sections))
	for i, s := range c.Sections {
		if s == nil {
			return c, fmt.Errorf("%w: Sections[%d] is nil", ErrInvalidOptions, i)
		}
		n := s.Name()
		if !nameRE.MatchString(n) || reservedNames[n] {
			return c, fmt.Errorf("%w: Sections[%d] name %q is reserved or not a URL segment", ErrInvalidOptions, i, n)
		}
		if seen[n] {
			return c, fmt.Errorf("%w: Sections[%d] name %q is used twice", ErrInvalidOptions, i, n)
		}
		seen[n] = true
		secs = append(secs, s)
	}
	c.Sections = secs
	return c, nil
}

func defaultActor(r *http.Request) string {
	if a := strings.TrimSpace(r.Header.Get("X-Zest-Actor")); a != "" {
		if len(a) > 64 {
			a = a[:64]
		}
		return a
	}
	return r.RemoteAddr
}
