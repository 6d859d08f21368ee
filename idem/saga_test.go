package idem_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
)

// transfer is the state of the saga flow in these tests: it carries the
// token key of the request that started it.
type transfer struct {
	Scope, Order string
	Amount       int
	Fail         bool // the bank refuses (a permanent error)
}

func (s *transfer) key() idem.Key { return idem.Key{Scope: s.Scope, ID: s.Order, Scene: "transfer"} }

// sagaEnv is a durable DB with tokens, a saga runner and the mover that
// carries its remote calls; the bank's remote call waits for release.
type sagaEnv struct {
	db      *stm.DB
	q       *effectqueue.Queue
	tokens  *idem.Tokens
	runner  *saga.Runner
	flow    *saga.Flow[transfer]
	release chan struct{}
	endErr  func(id string) error // extra check in OnEnd; nil for none
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var errBankRefused = errors.New("bank: account closed")

func newSagaEnv(t *testing.T, opts *idem.Options) *sagaEnv {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &sagaEnv{release: make(chan struct{})}
	var err error
	e.db, err = stm.Open(&stm.Options{Logger: quiet})
	require.NoError(t, err)
	e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: t.TempDir(), Logger: quiet})
	require.NoError(t, err)
	if opts == nil {
		opts = &idem.Options{}
	}
	opts.Logger = quiet
	e.tokens, err = idem.New(e.db, "tokens", opts)
	require.NoError(t, err)
	e.runner, err = saga.New(e.db, e.q, &saga.Options{
		Retry:  saga.Retry{MaxAttempts: 2, Base: time.Millisecond, Max: 5 * time.Millisecond},
		Logger: quiet,
	})
	require.NoError(t, err)
	bank := func(ctx context.Context, c saga.Call, s *transfer) error {
		select {
		case <-e.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.Fail {
			return mover.Permanent(errBankRefused)
		}
		return nil
	}
	e.flow, err = saga.Define("transfer", 1, saga.Remote("bank", bank, nil))
	require.NoError(t, err)
	// The end hook: the saga's outcome becomes the token's result, in the
	// transaction that ends the saga.
	err = e.flow.Register(e.runner, &saga.FlowOptions[transfer]{
		OnEnd: func(tx *stm.Tx, id string, outcome saga.Outcome, s *transfer) error {
			if e.endErr != nil {
				if err := e.endErr(id); err != nil {
					return err
				}
			}
			err := e.tokens.Settle(tx, s.key(), id, []byte(string(outcome)))
			if errors.Is(err, idem.ErrNotLinked) {
				return nil // an operator forgot the token: nothing to settle
			}
			return err
		},
	})
	require.NoError(t, err)
	m, err := mover.New(e.q, map[string]mover.Sink{saga.Kind: e.runner.Sink()},
		&mover.Options{Logger: quiet, BaseBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.wg.Go(func() { _ = m.Run(ctx) })
	e.wg.Go(func() { _ = e.runner.Run(ctx) })
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = m.Shutdown(sctx)
		cancel()
		e.wg.Wait()
		require.NoError(t, e.q.Close())
	})
	return e
}

// request is what a request handler does: begin the token; if new, start
// the saga and link the token to it, all in one transaction.
func (e *sagaEnv) request(s transfer) (result string, replay bool, err error) {
	fp := idem.Fingerprint([]byte(s.Order), []byte{byte(s.Amount)})
	type out struct {
		result string
		replay bool
	}
	o, err := stm.RunValue(context.Background(), e.db, func(tx *stm.Tx) (out, error) {
		prev, replay, err := e.tokens.Begin(tx, s.key(), fp)
		if err != nil || replay {
			return out{string(prev), replay}, err
		}
		id := "transfer-" + s.Order
		if err := e.flow.Start(tx, id, s); err != nil {
			return out{}, err
		}
		return out{"accepted", false}, e.tokens.Link(tx, s.key(), id)
	})
	return o.result, o.replay, err
}

func (e *sagaEnv) wait(t *testing.T, id string) saga.Info {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := e.runner.Wait(ctx, id)
	require.NoError(t, err)
	return in
}

// TestSagaSettlesToken: while the saga runs, the token answers
// ErrInProgress; the saga's end hook settles it with the outcome, which
// later requests replay. Done and Compensated both end the wait.
func TestSagaSettlesToken(t *testing.T) {
	e := newSagaEnv(t, nil)
	ok := transfer{Scope: "alice", Order: "1", Amount: 50}
	bad := transfer{Scope: "alice", Order: "2", Amount: 70, Fail: true}
	for _, s := range []transfer{ok, bad} {
		r, replay, err := e.request(s)
		require.NoError(t, err)
		assert.Equal(t, "accepted", r)
		assert.False(t, replay)
		for range 3 {
			_, _, err = e.request(s)
			require.ErrorIs(t, err, idem.ErrInProgress, "the saga is still running")
		}
		in, err := e.tokens.Lookup(context.Background(), s.key())
		require.NoError(t, err)
		assert.Equal(t, "linked", in.State)
		assert.Equal(t, "transfer-"+s.Order, in.Ref)
	}
	close(e.release)
	assert.Equal(t, saga.Done, e.wait(t, "transfer-1").Phase)
	assert.Equal(t, saga.Compensated, e.wait(t, "transfer-2").Phase)

	r, replay, err := e.request(ok)
	require.NoError(t, err)
	assert.Equal(t, "done", r)
	assert.True(t, replay)
	r, replay, err = e.request(bad)
	require.NoError(t, err)
	assert.Equal(t, "compensated", r)
	assert.True(t, replay)
	_, _, err = e.request(transfer{Scope: "alice", Order: "1", Amount: 51})
	require.ErrorIs(t, err, idem.ErrMismatch)
	// Settled is counted by a hook of the saga's end transaction, on the
	// mover's goroutine: it may trail the end the test saw.
	waitFor(t, 10*time.Second, func() bool { return e.tokens.Stats().Settled == 2 }, "both settles counted")
	assert.Equal(t, uint64(2), e.tokens.Stats().Settled)
	assert.Equal(t, uint64(6), e.tokens.Stats().InProgress)
}

// TestSagaEndAndTokenAreAtomic: an end hook that fails leaves the saga
// stuck and the token linked (the settle rolled back with the end); the
// operator's retry of the end settles it.
func TestSagaEndAndTokenAreAtomic(t *testing.T) {
	e := newSagaEnv(t, nil)
	var mu sync.Mutex
	failEnd := true
	e.endErr = func(string) error {
		mu.Lock()
		defer mu.Unlock()
		if failEnd {
			return errors.New("ledger unavailable")
		}
		return nil
	}
	s := transfer{Scope: "bob", Order: "3", Amount: 5}
	_, _, err := e.request(s)
	require.NoError(t, err)
	close(e.release)
	in := e.wait(t, "transfer-3")
	require.Equal(t, saga.Stuck, in.Phase)
	assert.True(t, strings.Contains(in.Reason, "ledger unavailable"), in.Reason)
	_, _, err = e.request(s)
	require.ErrorIs(t, err, idem.ErrInProgress, "a stuck saga has not ended")

	mu.Lock()
	failEnd = false
	mu.Unlock()
	require.NoError(t, e.runner.Resolve(context.Background(), "transfer-3", saga.Resolution{Action: saga.ActionRetry, Who: "ops", Note: "ledger back"}))
	in = e.wait(t, "transfer-3")
	require.Equal(t, saga.Done, in.Phase)
	r, replay, err := e.request(s)
	require.NoError(t, err)
	assert.Equal(t, "done", r)
	assert.True(t, replay)
}

// TestSagaTokenForgotten: an operator forgets the token while the saga
// runs; the saga still ends (its hook finds nothing to settle), and a new
// request with the key starts over.
func TestSagaTokenForgotten(t *testing.T) {
	e := newSagaEnv(t, nil)
	s := transfer{Scope: "carol", Order: "4", Amount: 9}
	_, _, err := e.request(s)
	require.NoError(t, err)
	found, err := e.tokens.Discard(context.Background(), s.key())
	require.NoError(t, err)
	require.True(t, found)
	close(e.release)
	require.Equal(t, saga.Done, e.wait(t, "transfer-4").Phase)
	_, err = e.tokens.Lookup(context.Background(), s.key())
	require.ErrorIs(t, err, idem.ErrNotFound)
	// Starting the same saga id again is refused by the saga package: the
	// request's transaction rolls back, token included.
	_, _, err = e.request(s)
	require.ErrorIs(t, err, saga.ErrDuplicate)
	_, err = e.tokens.Lookup(context.Background(), s.key())
	require.ErrorIs(t, err, idem.ErrNotFound)
}
