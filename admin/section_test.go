package admin_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
)

// notes is a Section for the test: a list, a lookup, an action that
// records a note, and a route that panics.
type notes struct {
	acted atomic.Int64
	note  atomic.Pointer[string]
}

func (n *notes) Name() string { return "notes" }

func (n *notes) Routes() []admin.Route {
	return []admin.Route{
		{Method: "GET", Pattern: "items", Handle: func(r *admin.Request) (any, error) {
			_, limit, err := r.Paging(10)
			if err != nil {
				return nil, err
			}
			return admin.Page[map[string]any]{Items: []map[string]any{{"id": "n1", "limit": limit}}}, nil
		}},
		{Method: "GET", Pattern: "item/{id}", Handle: func(r *admin.Request) (any, error) {
			if r.Param("id") != "n1" {
				return nil, fmt.Errorf("%w: no note %q", admin.ErrNotFound, r.Param("id"))
			}
			return map[string]string{"id": "n1"}, nil
		}},
		{Method: "POST", Pattern: "item/{id}/act", Handle: func(r *admin.Request) (any, error) {
			var b struct {
				Note string `json:"note"`
			}
			if err := r.Decode(&b); err != nil {
				return nil, err
			}
			if b.Note == "" {
				return nil, fmt.Errorf("%w: a note is required", admin.ErrBadRequest)
			}
			s := r.Actor + ": " + b.Note
			n.note.Store(&s)
			n.acted.Add(1)
			return map[string]bool{"ok": true}, nil
		}},
		{Method: "GET", Pattern: "boom", Handle: func(r *admin.Request) (any, error) { panic("section bug") }},
		{Method: "GET", Pattern: "fail", Handle: func(r *admin.Request) (any, error) { return nil, errors.New("disk on fire") }},
	}
}

func (n *notes) View() admin.View {
	return admin.View{Title: "Notes", List: &admin.ListView{Path: "items", Columns: []admin.Column{{Field: "id", Label: "id"}},
		Actions: []admin.Action{{Label: "Act", Path: "item/{id}/act", Confirm: "Act?", Note: true}}}}
}

func TestSection(t *testing.T) {
	n := &notes{}
	h, err := admin.NewHandler(&admin.Options{Sections: []admin.Section{n}, ReadOnly: false})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &env{t: t, srv: srv}
	cases := []struct {
		method, path, body string
		hdr                map[string]string
		status             int
		want               string
	}{
		{"GET", "/api/notes/items?limit=3", "", nil, 200, `"limit":3`},
		{"GET", "/api/notes/items?limit=3000", "", nil, 400, `limit "3000"`},
		{"GET", "/api/notes/item/n1", "", nil, 200, `"id":"n1"`},
		{"GET", "/api/notes/item/n2", "", nil, 404, `no note "n2"`},
		{"POST", "/api/notes/item/n1/act", `{}`, nil, 400, "a note is required"},
		{"POST", "/api/notes/item/n1/act", `{"note":"x","extra":1}`, nil, 400, `unknown field "extra"`},
		{"POST", "/api/notes/item/n1/act", `{"note":"fixed by hand"}`, map[string]string{"X-Zest-Admin": ""}, 403, "X-Zest-Admin"},
		{"GET", "/api/notes/item/n1/act", "", nil, 405, "method not allowed"},
		{"GET", "/api/notes/boom", "", nil, 500, "handler panicked: section bug"},
		{"GET", "/api/notes/fail", "", nil, 500, "disk on fire"},
		{"POST", "/api/notes/item/n1/act", `{"note":"fixed by hand"}`, map[string]string{"X-Zest-Actor": "dave"}, 200, `"ok":true`},
		{"GET", "/api/overview", "", nil, 200, `"sections":[{"name":"notes","title":"Notes"`},
	}
	for _, c := range cases {
		st, body := e.do(c.method, c.path, c.body, c.hdr, nil)
		if st != c.status || !strings.Contains(strings.ReplaceAll(body, `\"`, `"`), c.want) {
			t.Fatalf("%s %s: %d %s; want %d and %q", c.method, c.path, st, body, c.status, c.want)
		}
	}
	if n.acted.Load() != 1 || *n.note.Load() != "dave: fixed by hand" {
		t.Fatalf("the action ran %d times with %v; want once, by dave", n.acted.Load(), n.note.Load())
	}
}

func TestOptionsValidation(t *testing.T) {
	q := &effectqueue.Queue{}
	cases := []struct {
		name string
		o    admin.Options
		want string
	}{
		{"root without slash", admin.Options{RootPath: "admin"}, "RootPath"},
		{"root with trailing slash", admin.Options{RootPath: "/admin/"}, "RootPath"},
		{"negative payload cap", admin.Options{MaxPayload: -1}, "MaxPayload"},
		{"negative refresh", admin.Options{RefreshInterval: -1}, "RefreshInterval"},
		{"queue name with a slash", admin.Options{Queues: map[string]*effectqueue.Queue{"a/b": q}}, "Queues name"},
		{"nil queue", admin.Options{Queues: map[string]*effectqueue.Queue{"a": nil}}, `Queues["a"] is nil`},
		{"mover without queue", admin.Options{Movers: map[string]*mover.Mover{"a": nil}}, `Movers["a"] has no queue`},
		{"nil mover", admin.Options{Queues: map[string]*effectqueue.Queue{"a": q}, Movers: map[string]*mover.Mover{"a": nil}}, `Movers["a"] is nil`},
		{"nil section", admin.Options{Sections: []admin.Section{nil}}, "Sections[0] is nil"},
		{"reserved section", admin.Options{Sections: []admin.Section{named("queues")}}, "reserved"},
		{"duplicate section", admin.Options{Sections: []admin.Section{named("x"), named("x")}}, "used twice"},
	}
	for _, c := range cases {
		_, err := admin.NewHandler(&c.o)
		if !errors.Is(err, admin.ErrInvalidOptions) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v; want ErrInvalidOptions naming %q", c.name, err, c.want)
		}
	}
	if _, err := admin.NewHandler(nil); err != nil {
		t.Fatalf("nil options: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Handler did not panic on invalid options")
		}
	}()
	admin.Handler(&admin.Options{RootPath: "x"})
}

type named string

func (n named) Name() string          { return string(n) }
func (n named) Routes() []admin.Route { return nil }
func (n named) View() admin.View      { return admin.View{} }

// TestNilOptionsServesPage: a handler with nothing configured serves the page
// and an empty overview.
func TestNilOptionsServesPage(t *testing.T) {
	srv := httptest.NewServer(admin.Handler(nil))
	defer srv.Close()
	e := &env{t: t, srv: srv}
	if st, body := e.do("GET", "/", "", nil, nil); st != 200 || !strings.Contains(body, "<title>Zest admin</title>") {
		t.Fatalf("page: %d %s", st, body)
	}
	if st, body := e.do("GET", "/api/overview", "", nil, nil); st != 200 || !strings.Contains(body, `"queues":[]`) {
		t.Fatalf("overview: %d %s", st, body)
	}
	resp, err := http.Get(srv.URL + "/static/app.js")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("app.js: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestCallbackPanics: a panicking Authorize or Actor gets a 500 with a JSON
// error, changes nothing, and the server goes on serving.
func TestCallbackPanics(t *testing.T) {
	for _, c := range []struct {
		name string
		o    admin.Options
		msg  string
	}{
		{"authorize", admin.Options{Authorize: func(*http.Request) bool { panic("auth bug") }}, "Authorize panicked: auth bug"},
		{"actor", admin.Options{Actor: func(*http.Request) string { panic("actor bug") }}, "Actor panicked: actor bug"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, &c.o, "bad")
			seqs := e.enqueue(e.db, e.q, "bad")
			e.drain()
			before := e.state()
			for i := 0; i < 3; i++ {
				st, body := e.do("POST", fmt.Sprintf("/api/queues/main/dead/%d/discard", seqs[0]), "", nil, nil)
				if st != 500 || !strings.Contains(body, c.msg) {
					t.Fatalf("POST with a panicking %s: %d %s", c.name, st, body)
				}
			}
			if after := e.state(); fmt.Sprint(before) != fmt.Sprint(after) {
				t.Fatalf("state changed: %+v -> %+v", before, after)
			}
		})
	}
}
