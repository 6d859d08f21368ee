package idem_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// shop is an HTTP payment endpoint behind the middleware, on a real
// 127.0.0.1 server.
type shop struct {
	db       *stm.DB
	tokens   *idem.Tokens
	paid     *table.Table[string, int]
	srv      *httptest.Server
	calls    atomic.Int64 // handler calls (attempts included)
	panicked atomic.Bool
	conflict *stm.Var[int] // written by a helper to force a rerun

	// barrier holds first attempts of "barrier" requests until barrierN
	// of them are inside the handler at once.
	barrierMu   sync.Mutex
	barrierN    int
	barrierIn   int
	barrierOpen chan struct{}
}

// waitBarrier blocks until barrierN handlers called it, or 10 s pass (a
// failing test must not hang).
func (s *shop) waitBarrier() {
	s.barrierMu.Lock()
	s.barrierIn++
	if s.barrierIn == s.barrierN {
		close(s.barrierOpen)
	}
	s.barrierMu.Unlock()
	select {
	case <-s.barrierOpen:
	case <-time.After(10 * time.Second):
	}
}

func newShop(t *testing.T, opts *idem.Options, mopts *idem.MiddlewareOptions) *shop {
	s := &shop{conflict: stm.NewVar[int](nil, 0)}
	s.db, s.tokens = openMem(t, opts)
	var err error
	s.paid, err = table.New[string, int](s.db, "paid")
	require.NoError(t, err)
	mw, err := idem.Middleware(s.tokens, mopts)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /orders/{id}/pay", mw(http.HandlerFunc(s.pay)))
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the panic test's stack
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

// pay is the handler: it writes with the request's transaction.
func (s *shop) pay(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	tx, ok := idem.TxFrom(r.Context())
	if !ok {
		http.Error(w, "no transaction", http.StatusInternalServerError)
		return
	}
	id := r.PathValue("id")
	body, _ := io.ReadAll(r.Body)
	prefix := ""
	switch cmd := string(body); {
	case cmd == "fail":
		n, _ := s.paid.Get(tx, id)
		s.paid.Put(tx, id, n+100) // rolled back
		http.Error(w, "payment provider down", http.StatusBadGateway)
		return
	case cmd == "panic-once" && s.panicked.CompareAndSwap(false, true):
		s.paid.Put(tx, id, 100)
		panic("handler bug")
	case cmd == "big":
		s.paid.Put(tx, id, 100)
		_, _ = w.Write(make([]byte, 4096))
		return
	case cmd == "link":
		key, _ := idem.KeyFrom(r.Context())
		if err := s.tokens.Link(tx, key, "saga-"+id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "started")
		return
	case cmd == "barrier" && tx.Attempt() == 1:
		s.waitBarrier()
	case cmd == "rerun":
		v, _ := s.conflict.Load(tx)
		prefix = fmt.Sprintf("attempt %d;", tx.Attempt())
		if tx.Attempt() == 1 {
			done := make(chan error)
			go func() {
				done <- s.db.Run(context.Background(), func(tx *stm.Tx) error { s.conflict.Store(tx, v+1); return nil })
			}()
			if err := <-done; err != nil {
				panic(err)
			}
		}
		s.conflict.Store(tx, v+1)
	}
	n, _ := s.paid.Get(tx, id)
	s.paid.Put(tx, id, n+1)
	w.Header().Set("X-Receipt", "r-"+id)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "%spaid %s", prefix, id)
}

func (s *shop) total(t *testing.T, id string) int {
	n, err := stm.RunValue(context.Background(), s.db, func(tx *stm.Tx) (int, error) { v, _ := s.paid.Get(tx, id); return v, nil })
	require.NoError(t, err)
	return n
}

type resp struct {
	status int
	body   string
	header http.Header
}

func (s *shop) post(t testing.TB, path, key, body string) (resp, error) {
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return resp{}, err
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := s.srv.Client().Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{res.StatusCode, string(b), res.Header}, err
}

func (s *shop) mustPost(t *testing.T, path, key, body string) resp {
	t.Helper()
	r, err := s.post(t, path, key, body)
	require.NoError(t, err)
	return r
}

func TestMiddlewareReplay(t *testing.T) {
	s := newShop(t, nil, nil)
	first := s.mustPost(t, "/orders/1/pay", "key-1", "10 EUR")
	require.Equal(t, http.StatusCreated, first.status)
	assert.Equal(t, "paid 1", first.body)
	assert.Equal(t, "r-1", first.header.Get("X-Receipt"))
	assert.Empty(t, first.header.Get(idem.ReplayedHeader))
	for range 3 {
		again := s.mustPost(t, "/orders/1/pay", "key-1", "10 EUR")
		assert.Equal(t, first.status, again.status)
		assert.Equal(t, first.body, again.body)
		assert.Equal(t, "r-1", again.header.Get("X-Receipt"))
		assert.Equal(t, "text/plain", again.header.Get("Content-Type"))
		assert.Equal(t, "true", again.header.Get(idem.ReplayedHeader))
	}
	assert.Equal(t, 1, s.total(t, "1"))
	assert.Equal(t, int64(1), s.calls.Load(), "replays do not call the handler")
}

func TestMiddlewareStatuses(t *testing.T) {
	s := newShop(t, &idem.Options{MaxResultSize: 1024}, &idem.MiddlewareOptions{MaxBodySize: 64})
	require.Equal(t, http.StatusCreated, s.mustPost(t, "/orders/1/pay", "k", "10 EUR").status)
	calls := s.calls.Load()

	cases := []struct {
		name, path, key, body string
		status                int
	}{
		{"missing key", "/orders/1/pay", "", "10 EUR", http.StatusBadRequest},
		{"key too long", "/orders/1/pay", strings.Repeat("k", 600), "10 EUR", http.StatusBadRequest},
		{"other body", "/orders/1/pay", "k", "11 EUR", http.StatusUnprocessableEntity},
		{"other path", "/orders/2/pay", "k", "10 EUR", http.StatusUnprocessableEntity},
		{"other query", "/orders/1/pay?x=1", "k", "10 EUR", http.StatusUnprocessableEntity},
		{"body too large", "/orders/1/pay", "k2", strings.Repeat("x", 65), http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		r := s.mustPost(t, c.path, c.key, c.body)
		assert.Equal(t, c.status, r.status, c.name)
		assert.Equal(t, "application/problem+json", r.header.Get("Content-Type"), c.name)
		assert.Contains(t, r.body, `"status":`+strconv.Itoa(c.status), c.name)
	}
	assert.Equal(t, calls, s.calls.Load(), "refused requests never reach the handler")
	assert.Equal(t, 1, s.total(t, "1"))
	assert.Equal(t, 0, s.total(t, "2"))

	// A response over MaxResultSize cannot be stored: 500, writes rolled back.
	r := s.mustPost(t, "/orders/3/pay", "k3", "big")
	assert.Equal(t, http.StatusInternalServerError, r.status)
	assert.Equal(t, 0, s.total(t, "3"))
	_, err := s.tokens.Lookup(context.Background(), idem.Key{ID: "k3", Scene: "http"})
	require.ErrorIs(t, err, idem.ErrNotFound)
}

func TestMiddlewareFailuresAreNotStored(t *testing.T) {
	s := newShop(t, nil, nil)
	// A 5xx rolls back the handler's writes and the token: retries run again.
	for i := range 2 {
		r := s.mustPost(t, "/orders/1/pay", "k", "fail")
		assert.Equal(t, http.StatusBadGateway, r.status)
		assert.Contains(t, r.body, "payment provider down")
		assert.Empty(t, r.header.Get(idem.ReplayedHeader))
		assert.Equal(t, int64(i+1), s.calls.Load())
	}
	assert.Equal(t, 0, s.total(t, "1"))

	// A panic rolls back too. net/http drops the connection, and Go's
	// Transport retries a request that carries an Idempotency-Key by
	// itself: the retry runs the handler again and pays once.
	r, err := s.post(t, "/orders/2/pay", "p", "panic-once")
	if err != nil {
		r = s.mustPost(t, "/orders/2/pay", "p", "panic-once")
	}
	require.True(t, s.panicked.Load())
	assert.Equal(t, int64(4), s.calls.Load(), "2 failures, the panic, the retry")
	assert.Equal(t, http.StatusCreated, r.status, "the retry ran the handler")
	assert.Empty(t, r.header.Get(idem.ReplayedHeader))
	assert.Equal(t, 1, s.total(t, "2"))
}

// TestMiddlewareCommitOption: with Commit accepting every status, a 5xx
// response is stored and replayed, as Stripe does.
func TestMiddlewareCommitOption(t *testing.T) {
	s := newShop(t, nil, &idem.MiddlewareOptions{Commit: func(int) bool { return true }})
	r1 := s.mustPost(t, "/orders/1/pay", "k", "fail")
	r2 := s.mustPost(t, "/orders/1/pay", "k", "fail")
	assert.Equal(t, http.StatusBadGateway, r2.status)
	assert.Equal(t, r1.body, r2.body)
	assert.Equal(t, "true", r2.header.Get(idem.ReplayedHeader))
	assert.Equal(t, 100, s.total(t, "1"))
}

func TestMiddlewareLinked(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, nil, nil)
	r := s.mustPost(t, "/orders/9/pay", "k", "link")
	require.Equal(t, http.StatusAccepted, r.status)
	assert.Equal(t, "started\n", r.body)
	for range 2 {
		r = s.mustPost(t, "/orders/9/pay", "k", "link")
		assert.Equal(t, http.StatusConflict, r.status)
	}
	assert.Equal(t, int64(1), s.calls.Load())
	// The outside operation ends: its end transaction settles the token with
	// the final response.
	final := idem.EncodeResponse(http.StatusOK, http.Header{"Content-Type": {"application/json"}}, []byte(`{"state":"paid"}`))
	require.NoError(t, s.db.Run(ctx, func(tx *stm.Tx) error {
		return s.tokens.Settle(tx, idem.Key{ID: "k", Scene: "http"}, "saga-9", final)
	}))
	r = s.mustPost(t, "/orders/9/pay", "k", "link")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, `{"state":"paid"}`, r.body)
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	assert.Equal(t, "true", r.header.Get(idem.ReplayedHeader))
	assert.Equal(t, int64(1), s.calls.Load())
}

// TestMiddlewareRerun forces the handler's transaction to rerun: the
// response is the second attempt's alone, and the write happened once.
func TestMiddlewareRerun(t *testing.T) {
	s := newShop(t, nil, nil)
	r := s.mustPost(t, "/orders/1/pay", "k", "rerun")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.Equal(t, "attempt 2;paid 1", r.body)
	assert.Equal(t, int64(2), s.calls.Load())
	assert.Equal(t, 1, s.total(t, "1"))
	again := s.mustPost(t, "/orders/1/pay", "k", "rerun")
	assert.Equal(t, r.body, again.body)
}

// TestMiddlewareConcurrentDuplicates sends 40 identical requests at once,
// for each of 3 keys, and holds every first attempt in the handler until
// all 120 are inside it, so that all of them run the handler concurrently.
// Invariants: every request gets the same 201 and body; all but one per key
// are replays; the order is paid once.
func TestMiddlewareConcurrentDuplicates(t *testing.T) {
	s := newShop(t, nil, nil)
	const keys, dups = 3, 40
	s.barrierN, s.barrierOpen = keys*dups, make(chan struct{})
	var wg sync.WaitGroup
	results := make([][dups]resp, keys)
	errs := make([][dups]error, keys)
	start := make(chan struct{})
	for k := range keys {
		for d := range dups {
			wg.Go(func() {
				<-start
				results[k][d], errs[k][d] = s.post(t, fmt.Sprintf("/orders/%d/pay", k), fmt.Sprint("key-", k), "barrier")
			})
		}
	}
	close(start)
	wg.Wait()
	for k := range keys {
		replays := 0
		for d := range dups {
			require.NoError(t, errs[k][d])
			r := results[k][d]
			assert.Equal(t, http.StatusCreated, r.status)
			assert.Equal(t, fmt.Sprintf("paid %d", k), r.body)
			if r.header.Get(idem.ReplayedHeader) == "true" {
				replays++
			}
		}
		assert.Equal(t, dups-1, replays, "key %d", k)
		assert.Equal(t, 1, s.total(t, strconv.Itoa(k)), "key %d paid once", k)
	}
	s.barrierMu.Lock()
	assert.Equal(t, keys*dups, s.barrierIn, "every request ran the handler concurrently")
	s.barrierMu.Unlock()
	t.Logf("%d handler calls for %d executions", s.calls.Load(), keys)
}

func TestMiddlewareScope(t *testing.T) {
	s := newShop(t, nil, &idem.MiddlewareOptions{Scope: func(r *http.Request) string { return r.Header.Get("X-User") }})
	post := func(user string) resp {
		req, err := http.NewRequest(http.MethodPost, s.srv.URL+"/orders/1/pay", bytes.NewReader([]byte("1")))
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", "same")
		req.Header.Set("X-User", user)
		res, err := s.srv.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		return resp{status: res.StatusCode, header: res.Header}
	}
	assert.Empty(t, post("alice").header.Get(idem.ReplayedHeader))
	assert.Empty(t, post("bob").header.Get(idem.ReplayedHeader), "bob's key is not alice's")
	assert.Equal(t, "true", post("alice").header.Get(idem.ReplayedHeader))
	assert.Equal(t, 2, s.total(t, "1"))
}

func TestMiddlewareOptionsValidated(t *testing.T) {
	_, tokens := openMem(t, nil)
	_, err := idem.Middleware(tokens, &idem.MiddlewareOptions{MaxBodySize: -1})
	require.ErrorContains(t, err, "MiddlewareOptions.MaxBodySize")
	_, err = idem.Middleware(nil, nil)
	require.Error(t, err)
}

// TestMiddlewareCallbackPanics: a panic in Scope, in Commit or in the
// Tokens' clock reaches the caller (net/http recovers it per request) and
// leaves nothing stored; the next request runs normally.
func TestMiddlewareCallbackPanics(t *testing.T) {
	var panicScope, panicCommit, panicClock atomic.Bool
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{Now: func() time.Time {
		if panicClock.Load() {
			panic("clock")
		}
		return clk.Now()
	}})
	paid, err := table.New[string, int](db, "paid")
	require.NoError(t, err)
	mw, err := idem.Middleware(tokens, &idem.MiddlewareOptions{
		Scope: func(*http.Request) string {
			if panicScope.Load() {
				panic("scope")
			}
			return ""
		},
		Commit: func(status int) bool {
			if panicCommit.Load() {
				panic("commit")
			}
			return status < 500
		},
	})
	require.NoError(t, err)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := idem.TxFrom(r.Context())
		n, _ := paid.Get(tx, "o")
		paid.Put(tx, "o", n+1)
		w.WriteHeader(http.StatusCreated)
	}))
	serve := func() int {
		req := httptest.NewRequest(http.MethodPost, "/pay", strings.NewReader("x"))
		req.Header.Set("Idempotency-Key", "k")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, p := range []*atomic.Bool{&panicScope, &panicCommit, &panicClock} {
		p.Store(true)
		require.Panics(t, func() { serve() })
		p.Store(false)
		assert.Equal(t, 0, idem.Count(tokens), "nothing stored")
	}
	n, _ := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (int, error) { v, _ := paid.Get(tx, "o"); return v, nil })
	assert.Zero(t, n)
	assert.Equal(t, http.StatusCreated, serve())
	assert.Equal(t, http.StatusCreated, serve())
	assert.Equal(t, 1, idem.Count(tokens))
}
