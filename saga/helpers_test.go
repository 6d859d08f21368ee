package saga_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is one "process": a DB, its queue, a runner, and a mover carrying the
// runner's calls, on a directory that can be reopened.
type env struct {
	t      testing.TB
	dir    string
	db     *stm.DB
	q      *effectqueue.Queue
	r      *saga.Runner
	m      *mover.Mover
	ledger *table.Table[string, int] // local effects: key → times applied
	cancel context.CancelFunc
	// shutdownWait bounds the mover's graceful shutdown. Default 5s.
	shutdownWait time.Duration
	done         sync.WaitGroup
	errs         chan error
}

// fastRetry keeps tests quick: 3 attempts, 1–5ms backoff, 2s timeout.
func fastOptions() *saga.Options {
	return &saga.Options{
		Retry:   saga.Retry{MaxAttempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond},
		Timeout: 2 * time.Second,
		Logger:  quiet,
	}
}

// openEnv opens dir; register adds the flows before the runner starts.
func openEnv(t testing.TB, dir string, opts *saga.Options, register func(e *env)) *env {
	t.Helper()
	e := &env{t: t, dir: dir, errs: make(chan error, 4)}
	var err error
	e.db, err = stm.Open(&stm.Options{Logger: quiet})
	require.NoError(t, err)
	e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: dir, Logger: quiet, MemTableSize: 2 << 20, MaxEntrySize: 64 << 10}) // small: quick to open
	require.NoError(t, err)
	e.ledger, err = table.NewDurable[string, int](e.db, "ledger", nil)
	require.NoError(t, err)
	if opts == nil {
		opts = fastOptions()
	}
	e.r, err = saga.New(e.db, e.q, opts)
	require.NoError(t, err)
	if register != nil {
		register(e)
	}
	e.m, err = mover.New(e.q, map[string]mover.Sink{saga.Kind: e.r.Sink()},
		&mover.Options{Concurrency: 16, Logger: quiet, BaseBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done.Add(2)
	go func() {
		defer e.done.Done()
		if err := e.m.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			e.errs <- err
		}
	}()
	go func() {
		defer e.done.Done()
		if err := e.r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			e.errs <- err
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	if e.cancel == nil {
		return
	}
	wait := e.shutdownWait
	if wait == 0 {
		wait = 5 * time.Second
	}
	sctx, c := context.WithTimeout(context.Background(), wait)
	defer c()
	_ = e.m.Shutdown(sctx)
	e.cancel()
	e.done.Wait()
	e.cancel = nil
	require.NoError(e.t, e.q.Close())
	require.NoError(e.t, e.db.Close())
	select {
	case err := <-e.errs:
		e.t.Errorf("background: %v", err)
	default:
	}
}

// bump is a local effect: ledger[key]++ in tx.
func (e *env) bump(tx *stm.Tx, key string) {
	e.ledger.Update(tx, key, func(v int, _ bool) (int, bool) { return v + 1, true })
}

func (e *env) count(key string) int {
	n, err := stm.RunValue(context.Background(), e.db, func(tx *stm.Tx) (int, error) {
		v, _ := e.ledger.Get(tx, key)
		return v, nil
	})
	require.NoError(e.t, err)
	return n
}

func (e *env) start(f interface {
	Start(*stm.Tx, string, order) error
}, id string, s order) error {
	return e.db.Run(context.Background(), func(tx *stm.Tx) error { return f.Start(tx, id, s) })
}

func (e *env) wait(id string) saga.Info {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := e.r.Wait(ctx, id)
	if err != nil {
		in, _ = e.r.Inspect(context.Background(), id)
		e.t.Fatalf("saga %s did not finish: %v; now %+v", id, err, in)
	}
	return in
}

// order is the state of the test flows.
type order struct {
	Item   string
	Qty    int
	Ref    string // set by a remote step
	Amount int
}

// remote is an in-process fake of a remote service, for unit tests (the
// crash tests use a real HTTP server): it applies an OpID once, keeps
// tombstones for undos of unknown ops, and fails by script.
type remote struct {
	mu      sync.Mutex
	applied map[string]int // OpID → times applied (must stay ≤ 1)
	calls   map[string]int // OpID → requests
	undone  map[string]bool
	log     []string // "do step" / "undo step", in order of application
	// fail decides the error of a request (nil: apply).
	fail func(op string, n int) error
}

func newRemote() *remote {
	return &remote{applied: map[string]int{}, calls: map[string]int{}, undone: map[string]bool{}}
}

func (rm *remote) do(ctx context.Context, c saga.Call, s *order) error {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.calls[c.OpID]++
	if rm.fail != nil {
		if err := rm.fail(c.OpID, rm.calls[c.OpID]); err != nil {
			return err
		}
	}
	if c.Undo {
		do := c.OpID[:len(c.OpID)-len("undo")] + "do"
		if !rm.undone[do] {
			rm.undone[do] = true
			if rm.applied[do] > 0 {
				rm.log = append(rm.log, "undo "+c.Step)
			}
		}
		return nil
	}
	if rm.undone[c.OpID] {
		return mover.Permanent(errors.New("cancelled"))
	}
	if rm.applied[c.OpID] == 0 {
		rm.applied[c.OpID]++
		rm.log = append(rm.log, "do "+c.Step)
	}
	s.Ref = "ref-" + c.Step
	return nil
}

func (rm *remote) query(ctx context.Context, c saga.Call, s *order) (bool, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if c.Undo {
		do := c.OpID[:len(c.OpID)-len("undo")] + "do"
		return rm.undone[do], nil
	}
	return rm.applied[c.OpID] > 0, nil
}

func (rm *remote) sequence() []string {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return append([]string(nil), rm.log...)
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// counters waits until the runner's counters are want: they are updated by
// hooks after each commit, so they may trail what Wait saw by a moment.
func (e *env) counters(want saga.Counters) {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.r.Counters() == want }, 5*time.Second, time.Millisecond,
		"counters: want %+v", want)
}
