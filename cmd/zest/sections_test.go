package main

import (
	"context"
	"errors"
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

// TestSagasAndTokens drives the sagas and tokens commands against a real
// saga runner and token table behind the real handler: a saga stuck
// compensating is listed, shown, refused a resolution without a note, and
// resolved; a token is looked up and forgotten, with a dry run first.
func TestSagasAndTokens(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	tokens, err := idem.New(db, "tokens", &idem.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r, err := saga.New(db, q, &saga.Options{Retry: saga.Retry{MaxAttempts: 2, Base: time.Millisecond, Max: 2 * time.Millisecond}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var undoBroken atomic.Bool
	undoBroken.Store(true)
	flow, err := saga.Define("order", 1,
		saga.Remote("charge",
			func(ctx context.Context, c saga.Call, s *order) error { return nil },
			func(ctx context.Context, c saga.Call, s *order) error {
				if undoBroken.Load() {
					return mover.Permanent(errors.New("refund refused"))
				}
				return nil
			}),
		saga.Remote[order]("ship", func(ctx context.Context, c saga.Call, s *order) error { return mover.Permanent(errors.New("no stock")) }, nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := flow.Register(r, nil); err != nil {
		t.Fatal(err)
	}
	m, err := mover.New(q, map[string]mover.Sink{saga.Kind: r.Sink()}, &mover.Options{Logger: quiet, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { m.Run(ctx); done <- struct{}{} }()
	go func() { r.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	mux := http.NewServeMux()
	mux.Handle("/", admin.Handler(&admin.Options{DB: db, Logger: quiet, Queues: map[string]*effectqueue.Queue{"main": q},
		Sections: []admin.Section{admin.SagaSection(r), admin.IdemSection(tokens)}}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := &server{t: t, url: srv.URL}

	if err := db.Run(ctx, func(tx *stm.Tx) error { return flow.Start(tx, "o-1", order{SKU: "potion"}) }); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if info, err := r.Wait(wctx, "o-1"); err != nil || info.Phase != saga.Stuck {
		t.Fatalf("saga: %+v %v", info.Phase, err)
	}
	key := idem.Key{Scope: "u1", ID: "pay-7", Scene: "pay"}
	if err := db.Run(ctx, func(tx *stm.Tx) error { return tokens.Once(tx, key) }); err != nil {
		t.Fatal(err)
	}

	code, out, errs := s.zest("sagas", "stuck")
	if code != 0 || !regexpLine(out, `^.*o-1.*compensating.*$`) {
		t.Fatalf("sagas stuck: %d\n%s%s", code, out, errs)
	}
	code, out, _ = s.zest("sagas", "show", "o-1")
	if code != 0 || !regexpLine(out, `^phase\s+stuck$`) {
		t.Fatalf("sagas show: %d\n%s", code, out)
	}
	if code, _, errs = s.zest("sagas", "show", "nope"); code != exitNotFound || !strings.Contains(errs, `no saga "nope"`) {
		t.Fatalf("sagas show nope: %d %s", code, errs)
	}
	undoBroken.Store(false)
	code, out, _ = s.zest("sagas", "resolve", "o-1", "--action", "retry", "--note", "refunds work again", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run: would retry saga o-1") || r.Counters().Stuck != 1 {
		t.Fatalf("resolve --dry-run: %d\n%s", code, out)
	}
	code, out, errs = s.zest("sagas", "resolve", "o-1", "--action", "retry", "--note", "refunds work again")
	if code != 0 || !strings.Contains(out, "saga o-1: retry recorded") {
		t.Fatalf("resolve: %d\n%s%s", code, out, errs)
	}
	if info, err := r.Wait(wctx, "o-1"); err != nil || info.Phase != saga.Compensated {
		t.Fatalf("after resolve: %+v %v", info.Phase, err)
	}
	if code, _, errs = s.zest("sagas", "resolve", "o-1", "--action", "abort", "--note", "x"); code != exitConflict {
		t.Fatalf("resolve a saga that is not stuck: %d %s", code, errs)
	}

	code, out, _ = s.zest("tokens", "get", "pay-7", "--scope", "u1", "--scene", "pay")
	if code != 0 || !regexpLine(out, `^state\s+done$`) {
		t.Fatalf("tokens get: %d\n%s", code, out)
	}
	code, out, _ = s.zest("tokens", "forget", "pay-7", "--scope", "u1", "--scene", "pay", "--dry-run")
	if _, err := tokens.Lookup(ctx, key); code != 0 || err != nil || !strings.Contains(out, "would forget token u1/pay-7/pay") {
		t.Fatalf("tokens forget --dry-run: %d %v\n%s", code, err, out)
	}
	code, out, _ = s.zest("tokens", "forget", "pay-7", "--scope", "u1", "--scene", "pay", "--note", "customer retries")
	if _, err := tokens.Lookup(ctx, key); code != 0 || !errors.Is(err, idem.ErrNotFound) || !strings.Contains(out, "forgotten") {
		t.Fatalf("tokens forget: %d %v\n%s", code, err, out)
	}
	if code, _, _ = s.zest("tokens", "get", "pay-7", "--scope", "u1", "--scene", "pay"); code != exitNotFound {
		t.Fatalf("tokens get after forget: %d", code)
	}
	code, out, _ = s.zest("actions")
	if code != 0 || !strings.Contains(out, "/api/tokens/forget") {
		t.Fatalf("actions: %d\n%s", code, out)
	}
}
