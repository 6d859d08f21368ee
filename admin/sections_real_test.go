package admin_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
)

type order struct{ SKU string }

// sagaEnv is a real saga runner (with its mover) and a real token table on
// one DB and queue, with the admin handler showing both sections.
type sagaEnv struct {
	*env
	r          *saga.Runner
	flow       *saga.Flow[order]
	tokens     *idem.Tokens
	undoBroken atomic.Bool
}

func newSagaEnv(t *testing.T, opts *admin.Options) *sagaEnv {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	se := &sagaEnv{env: &env{t: t}}
	se.undoBroken.Store(true)
	var err error
	if se.db, err = stm.Open(nil); err != nil {
		t.Fatal(err)
	}
	if se.q, err = effectqueue.Open(se.db, &effectqueue.Options{Dir: t.TempDir(), Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { se.q.Close() })
	if se.tokens, err = idem.New(se.db, "tokens", &idem.Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	se.r, err = saga.New(se.db, se.q, &saga.Options{Retry: saga.Retry{MaxAttempts: 2, Base: time.Millisecond, Max: 2 * time.Millisecond}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := saga.Define("order", 1,
		saga.Remote("charge",
			func(ctx context.Context, c saga.Call, s *order) error { return nil },
			func(ctx context.Context, c saga.Call, s *order) error {
				if se.undoBroken.Load() {
					return mover.Permanent(errors.New("refund service refuses"))
				}
				return nil
			}),
		saga.Remote[order]("ship",
			func(ctx context.Context, c saga.Call, s *order) error { return mover.Permanent(errors.New("no stock")) }, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := flow.Register(se.r, nil); err != nil {
		t.Fatal(err)
	}
	se.flow = flow
	if se.m, err = mover.New(se.q, map[string]mover.Sink{saga.Kind: se.r.Sink()}, &mover.Options{Logger: quiet, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { se.m.Run(ctx); done <- struct{}{} }()
	go func() { se.r.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	var o admin.Options
	if opts != nil {
		o = *opts
	}
	o.DB, o.Logger = se.db, quiet
	o.Queues = map[string]*effectqueue.Queue{"main": se.q}
	o.Movers = map[string]*mover.Mover{"main": se.m}
	o.Sections = []admin.Section{admin.SagaSection(se.r), admin.IdemSection(se.tokens)}
	mux := http.NewServeMux()
	mux.Handle(o.RootPath+"/", admin.Handler(&o))
	se.srv = httptest.NewServer(mux)
	se.root = o.RootPath
	t.Cleanup(se.srv.Close)

	// One saga that gets stuck compensating: ship fails for good, and the
	// refund of charge is refused.
	if err := se.db.Run(ctx, func(tx *stm.Tx) error { return flow.Start(tx, "o-1", order{SKU: "potion"}) }); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	info, err := se.r.Wait(wctx, "o-1")
	if err != nil || info.Phase != saga.Stuck {
		t.Fatalf("saga o-1: %+v, %v; want stuck", info, err)
	}
	// One finished token.
	key := idem.Key{Scope: "u1", ID: "pay-7", Scene: "pay"}
	err = se.db.Run(ctx, func(tx *stm.Tx) error {
		if _, _, err := se.tokens.Begin(tx, key, nil); err != nil {
			return err
		}
		return se.tokens.Finish(tx, key, []byte(`{"charged":90}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	return se
}

func (se *sagaEnv) sagaState() string {
	info, err := se.r.Inspect(context.Background(), "o-1")
	if err != nil {
		se.t.Fatal(err)
	}
	return fmt.Sprintf("%s/%d/%+v", info.Phase, len(info.History), se.r.Counters())
}

func TestSagaSection(t *testing.T) {
	se := newSagaEnv(t, nil)
	var c saga.Counters
	if st, body := se.do("GET", "/api/sagas/counters", "", nil, &c); st != 200 || c.Stuck != 1 {
		t.Fatalf("counters: %d %s", st, body)
	}
	var p admin.Page[admin.StuckSaga]
	if st, body := se.do("GET", "/api/sagas/stuck?limit=10", "", nil, &p); st != 200 || len(p.Items) != 1 {
		t.Fatalf("stuck: %d %s", st, body)
	}
	if s := p.Items[0]; s.ID != "o-1" || s.Flow != "order" || s.StuckIn != "compensating" || s.Step != "charge" || !strings.Contains(s.LastError+s.Reason, "refund service refuses") {
		t.Fatalf("stuck saga = %+v", s)
	}
	var info saga.Info
	if st, body := se.do("GET", "/api/sagas/saga/o-1", "", nil, &info); st != 200 || info.Phase != saga.Stuck {
		t.Fatalf("saga: %d %s", st, body)
	}
	if st, body := se.do("GET", "/api/sagas/saga?id=o-1", "", nil, &info); st != 200 || info.ID != "o-1" {
		t.Fatalf("saga lookup: %d %s", st, body)
	}

	before := se.sagaState()
	for _, c := range []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/api/sagas/saga/o-1/resolve", `{"action":"retry"}`, 400, "needs a note"},
		{"/api/sagas/saga/o-1/resolve", `{"action":"retry","note":"   "}`, 400, "needs a note"},
		{"/api/sagas/saga/o-1/resolve", `{"action":"undo","note":"x"}`, 400, `action "undo"`},
		{"/api/sagas/saga/o-1/resolve", `{"action":"retry","note":"x","who":"mallory"}`, 400, `unknown field "who"`},
		{"/api/sagas/saga/o-1/resolve", `{"action":"retry","note":"` + strings.Repeat("n", 3000) + `"}`, 400, "at most 2000"},
		{"/api/sagas/saga/nope/resolve", `{"action":"retry","note":"x"}`, 404, `no saga "nope"`},
		{"/api/sagas/stuck?limit=0", "", 400, `limit "0"`},
		{"/api/sagas/saga?id=", "", 400, "saga id is required"},
	} {
		method := "POST"
		if c.body == "" {
			method = "GET"
		}
		st, body := se.do(method, c.path, c.body, nil, nil)
		if st != c.status || !strings.Contains(strings.ReplaceAll(body, `\"`, `"`), c.msg) {
			t.Fatalf("%s %s: %d %s; want %d %q", method, c.path, st, body, c.status, c.msg)
		}
		if after := se.sagaState(); after != before {
			t.Fatalf("%s %s changed the saga: %s -> %s", method, c.path, before, after)
		}
	}

	se.undoBroken.Store(false)
	if st, body := se.do("POST", "/api/sagas/saga/o-1/resolve", `{"action":"retry","note":"refund service fixed"}`, map[string]string{"X-Zest-Actor": "erin"}, nil); st != 200 {
		t.Fatalf("resolve: %d %s", st, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := se.r.Wait(ctx, "o-1")
	if err != nil || info.Phase != saga.Compensated {
		t.Fatalf("after retry: %+v %v; want compensated", info.Phase, err)
	}
	found := false
	for _, ev := range info.History {
		if ev.Kind == "resolved" && ev.Who == "erin" && strings.Contains(ev.Note, "refund service fixed") {
			found = true
		}
	}
	if !found {
		t.Fatalf("the resolution is not in the saga's history: %+v", info.History)
	}
	if st, body := se.do("POST", "/api/sagas/saga/o-1/resolve", `{"action":"abort","note":"again"}`, nil, nil); st != 409 || !strings.Contains(body, "not stuck") {
		t.Fatalf("resolving a saga that is not stuck: %d %s", st, body)
	}
	var acts []admin.ActionRecord
	se.do("GET", "/api/actions", "", nil, &acts)
	if len(acts) == 0 || acts[0].Status != 409 || acts[1].Actor != "erin" || acts[1].Note != "refund service fixed" {
		t.Fatalf("actions = %+v", acts)
	}
}

func TestIdemSection(t *testing.T) {
	se := newSagaEnv(t, nil)
	var info idem.Info
	if st, body := se.do("GET", "/api/tokens/token?scope=u1&id=pay-7&scene=pay", "", nil, &info); st != 200 || info.State != "done" || info.ResultSize != len(`{"charged":90}`) {
		t.Fatalf("lookup: %d %s", st, body)
	}
	for _, c := range []struct {
		method, path, body string
		hdr                map[string]string
		status             int
		msg                string
	}{
		{"GET", "/api/tokens/token?scope=u1&scene=pay", "", nil, 400, "needs an id"},
		{"GET", "/api/tokens/token?scope=u1&id=pay-8&scene=pay", "", nil, 404, "no token u1/pay-8/pay"},
		{"GET", "/api/tokens/token?id=pay-7&sceen=pay", "", nil, 400, `unknown query parameter "sceen"`},
		{"GET", "/api/tokens/token?id=a%00b", "", nil, 400, "token key"},
		{"POST", "/api/tokens/forget", `{"scope":"u1","id":"pay-7","scene":"pay"}`, map[string]string{"X-Zest-Admin": ""}, 403, "X-Zest-Admin"},
		{"POST", "/api/tokens/forget", `{"scope":"u1","scene":"pay"}`, nil, 400, "needs an id"},
		{"POST", "/api/tokens/forget", `{"scope":"u1","id":"pay-8","scene":"pay"}`, nil, 404, "no token"},
		{"GET", "/api/tokens/forget", "", nil, 405, "method not allowed"},
	} {
		st, body := se.do(c.method, c.path, c.body, c.hdr, nil)
		if st != c.status || !strings.Contains(strings.ReplaceAll(body, `\"`, `"`), c.msg) {
			t.Fatalf("%s %s: %d %s; want %d %q", c.method, c.path, st, body, c.status, c.msg)
		}
		if _, err := se.tokens.Lookup(context.Background(), idem.Key{Scope: "u1", ID: "pay-7", Scene: "pay"}); err != nil {
			t.Fatalf("%s %s: the token is gone: %v", c.method, c.path, err)
		}
	}
	var fr admin.ForgetResult
	if st, body := se.do("POST", "/api/tokens/forget", `{"scope":"u1","id":"pay-7","scene":"pay","note":"customer asked to pay again"}`, nil, &fr); st != 200 || !fr.Forgotten {
		t.Fatalf("forget: %d %s", st, body)
	}
	if _, err := se.tokens.Lookup(context.Background(), idem.Key{Scope: "u1", ID: "pay-7", Scene: "pay"}); !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("after forget: %v", err)
	}
	var s idem.Stats
	if se.do("GET", "/api/tokens/counters", "", nil, &s); s.Forgotten != 1 {
		t.Fatalf("counters: %+v", s)
	}
	if st, _ := se.do("POST", "/api/tokens/forget", `{"scope":"u1","id":"pay-7","scene":"pay"}`, nil, nil); st != 404 {
		t.Fatalf("second forget: %d", st)
	}
}

// TestSagaResolveActions: each action of the API reaches the saga as that
// action: skip and retry end it compensated, abort ends it aborted with the
// note as its reason.
func TestSagaResolveActions(t *testing.T) {
	se := newSagaEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"o-2", "o-3"} {
		if err := se.db.Run(ctx, func(tx *stm.Tx) error { return se.flow.Start(tx, id, order{SKU: "gem"}) }); err != nil {
			t.Fatal(err)
		}
		if info, err := se.r.Wait(ctx, id); err != nil || info.Phase != saga.Stuck {
			t.Fatalf("%s: %v %v", id, info.Phase, err)
		}
	}
	for _, c := range []struct {
		id, action string
		want       saga.Phase
	}{{"o-1", "skip", saga.Compensated}, {"o-2", "abort", saga.Aborted}, {"o-3", "retry", saga.Stuck}} {
		body := fmt.Sprintf(`{"action":%q,"note":"ops decided: %s"}`, c.action, c.action)
		if st, b := se.do("POST", "/api/sagas/saga/"+c.id+"/resolve", body, nil, nil); st != 200 {
			t.Fatalf("%s %s: %d %s", c.action, c.id, st, b)
		}
		// Resolve moved the saga out of Stuck in its transaction, so Wait
		// returns when it is final or stuck again (the undo is still
		// broken: a retry gets stuck after a new attempt).
		info, err := se.r.Wait(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		resolvedAt := -1
		for i, ev := range info.History {
			if ev.Kind == "resolved" {
				resolvedAt = i
			}
		}
		if resolvedAt < 0 || c.want == saga.Stuck && info.History[len(info.History)-1].Kind != "stuck" {
			t.Fatalf("%s %s: history %+v", c.action, c.id, info.History)
		}
		if info.Phase != c.want {
			t.Fatalf("%s %s: phase %s, want %s (history %+v)", c.action, c.id, info.Phase, c.want, info.History)
		}
		if c.action == "abort" && !strings.Contains(info.Reason, "ops decided: abort") {
			t.Fatalf("aborted saga's reason = %q", info.Reason)
		}
	}
}
