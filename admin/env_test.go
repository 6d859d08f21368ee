package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
)

// flakySink fails the keys it is told to fail, permanently (so the mover
// dead-letters at once), until told to succeed. It records deliveries.
type flakySink struct {
	mu        sync.Mutex
	failing   map[string]bool
	retrying  map[string]bool // fail these with a retryable error
	failures  chan string     // a key per retryable failure, when not full
	delivered []effectqueue.Item
	changed   chan struct{} // closed and replaced on each delivery
}

func newFlakySink(failing ...string) *flakySink {
	s := &flakySink{failing: map[string]bool{}, retrying: map[string]bool{}, changed: make(chan struct{}), failures: make(chan string, 1)}
	for _, k := range failing {
		s.failing[k] = true
	}
	return s
}

func (s *flakySink) Apply(ctx context.Context, d mover.Delivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing[d.Key] {
		return mover.Permanent(errors.New("sink refuses " + d.Key))
	}
	if s.retrying[d.Key] {
		select {
		case s.failures <- d.Key:
		default:
		}
		return errors.New("sink is down for " + d.Key)
	}
	s.delivered = append(s.delivered, d.Item)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *flakySink) succeed(key string) {
	s.mu.Lock()
	delete(s.failing, key)
	delete(s.retrying, key)
	s.mu.Unlock()
}

func (s *flakySink) deliveries() []effectqueue.Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]effectqueue.Item(nil), s.delivered...)
}

// waitDelivered waits until the sink has delivered n entries in all.
func (s *flakySink) waitDelivered(t *testing.T, n int) []effectqueue.Item {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		got, ch := len(s.delivered), s.changed
		s.mu.Unlock()
		if got >= n {
			return s.deliveries()
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("sink delivered %d entries, want %d", got, n)
		}
	}
}

// env is a real DB, a real Badger queue "main" with a real mover over a
// flakySink, a second queue "idle" in another DB with no mover (its entries
// stay pending), and the admin handler on an httptest server.
type env struct {
	t      *testing.T
	db     *stm.DB
	q      *effectqueue.Queue
	idleDB *stm.DB
	idle   *effectqueue.Queue
	m      *mover.Mover
	sink   *flakySink
	srv    *httptest.Server
	root   string
	logs   *bytes.Buffer
}

func newEnv(t *testing.T, opts *admin.Options, failing ...string) *env {
	t.Helper()
	e := &env{t: t, sink: newFlakySink(failing...), logs: &bytes.Buffer{}}
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: e.logs}, nil))
	var err error
	if e.db, err = stm.Open(nil); err != nil {
		t.Fatal(err)
	}
	if e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: t.TempDir(), Logger: logger}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.q.Close() })
	if e.idleDB, err = stm.Open(nil); err != nil {
		t.Fatal(err)
	}
	if e.idle, err = effectqueue.Open(e.idleDB, &effectqueue.Options{Dir: t.TempDir(), Logger: logger}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.idle.Close() })
	e.m, err = mover.New(e.q, map[string]mover.Sink{"t": e.sink}, &mover.Options{
		MaxAttempts: 100000, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, PollInterval: 50 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- e.m.Run(ctx) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		e.m.Shutdown(sctx)
		cancel()
		<-runDone
	})
	var o admin.Options
	if opts != nil {
		o = *opts
	}
	o.DB = e.db
	o.Queues = map[string]*effectqueue.Queue{"main": e.q, "idle": e.idle}
	o.Movers = map[string]*mover.Mover{"main": e.m}
	if o.Logger == nil {
		o.Logger = logger
	}
	h, err := admin.NewHandler(&o)
	if err != nil {
		t.Fatal(err)
	}
	e.root = o.RootPath
	mux := http.NewServeMux()
	mux.Handle(o.RootPath+"/", h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// enqueue commits one entry per key to q, in one transaction each, and
// returns their sequence numbers.
func (e *env) enqueue(db *stm.DB, q *effectqueue.Queue, keys ...string) []uint64 {
	e.t.Helper()
	var seqs []uint64
	for _, k := range keys {
		err := db.Run(context.Background(), func(tx *stm.Tx) error {
			return q.Enqueue(tx, effectqueue.Entry{Kind: "t.put", Key: k, Payload: []byte("payload of " + k), Meta: map[string]string{"k": k}})
		})
		if err != nil {
			e.t.Fatal(err)
		}
		seqs = append(seqs, q.Head())
	}
	return seqs
}

// drain waits until the mover has no pending entry.
func (e *env) drain() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.m.WaitDrained(ctx); err != nil {
		e.t.Fatalf("mover did not drain: %v", err)
	}
}

// do sends a request and decodes the JSON answer into out (when non-nil). It
// returns the status and the raw body.
func (e *env) do(method, path string, body string, hdr map[string]string, out any) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+e.root+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if method == "POST" {
		req.Header.Set("X-Zest-Admin", "1")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

// state is what must not change after a refused request.
type state struct {
	MainHead, IdleHead   uint64
	MainDepth, IdleDepth int64
	MainDead, IdleDead   []uint64
	Delivered            int
	Paused               bool
}

func (e *env) state() state {
	e.t.Helper()
	dead := func(q *effectqueue.Queue) []uint64 {
		dls, err := q.DeadLetters(context.Background(), 0, 10000)
		if err != nil {
			e.t.Fatal(err)
		}
		var s []uint64
		for _, d := range dls {
			s = append(s, d.Seq)
		}
		return s
	}
	return state{MainHead: e.q.Head(), IdleHead: e.idle.Head(), MainDepth: e.q.Depth(), IdleDepth: e.idle.Depth(),
		MainDead: dead(e.q), IdleDead: dead(e.idle), Delivered: len(e.sink.deliveries()), Paused: e.m.Paused()}
}
