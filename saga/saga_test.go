package saga_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
)

// threeRemote defines local "reserve", remote a, b, c, local "confirm";
// every step records itself in the ledger (local) or the remote (remote).
func threeRemote(e *env, rm *remote, name string, edit func(steps []saga.Step[order])) *saga.Flow[order] {
	steps := []saga.Step[order]{
		saga.Local("reserve",
			func(tx *stm.Tx, s *order) error { e.bump(tx, "reserve"); return nil },
			func(tx *stm.Tx, s *order) error { e.bump(tx, "unreserve"); return nil }),
		{Name: "a", Call: rm.do, CallUndo: rm.do},
		{Name: "b", Call: rm.do, CallUndo: rm.do},
		{Name: "c", Call: rm.do, CallUndo: rm.do},
		saga.Local("confirm",
			func(tx *stm.Tx, s *order) error { e.bump(tx, "confirm:"+s.Ref); return nil }, nil),
	}
	if edit != nil {
		edit(steps)
	}
	f, err := saga.Define(name, 1, steps...)
	require.NoError(e.t, err)
	require.NoError(e.t, f.Register(e.r, nil))
	return f
}

func TestHappyPath(t *testing.T) {
	rm := newRemote()
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) { f = threeRemote(e, rm, "order", nil) })
	require.NoError(t, e.start(f, "o1", order{Item: "potion", Qty: 1}))
	in := e.wait("o1")
	assert.Equal(t, saga.Done, in.Phase)
	assert.Equal(t, []string{"do a", "do b", "do c"}, rm.sequence())
	assert.Equal(t, 1, e.count("reserve"))
	assert.Equal(t, 1, e.count("confirm:ref-c"), "the state changed by the remote step reaches the next local step")
	assert.Equal(t, 0, e.count("unreserve"))
	e.counters(saga.Counters{Started: 1, Done: 1})
	st, ok := in.State.(map[string]any)
	require.True(t, ok, "state decodes generically: %T", in.State)
	assert.Equal(t, "ref-c", st["Ref"])
	for op, n := range rm.applied {
		assert.Equal(t, 1, n, op)
		assert.True(t, strings.HasPrefix(op, "order/o1/"), op)
	}
}

// TestCompensationOrder fails step c permanently: c (which may have run) is
// undone, then b, then a, then the local reserve, in that order.
func TestCompensationOrder(t *testing.T) {
	rm := newRemote()
	rm.fail = func(op string, n int) error {
		if strings.HasSuffix(op, "/c/do") {
			return mover.Permanent(errors.New("out of stock"))
		}
		return nil
	}
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) { f = threeRemote(e, rm, "order", nil) })
	require.NoError(t, e.start(f, "o1", order{}))
	in := e.wait("o1")
	assert.Equal(t, saga.Compensated, in.Phase)
	assert.Contains(t, in.Reason, "out of stock")
	// c never applied, so its undo changes nothing (but is sent: it may have).
	assert.Equal(t, []string{"do a", "do b", "undo b", "undo a"}, rm.sequence())
	assert.Equal(t, 1, rm.calls["order/o1/c/undo"], "the failed step is compensated too: it may have landed")
	assert.Equal(t, 1, e.count("unreserve"))
	assert.Equal(t, 0, e.count("confirm:"))
	e.counters(saga.Counters{Started: 1, Compensated: 1})
}

// TestRetryKeepsOpID fails a twice (retryable), then succeeds: the same
// OpID each time, attempts 1, 2, 3, recorded in the history.
func TestRetryKeepsOpID(t *testing.T) {
	rm := newRemote()
	var attempts []int
	var mu sync.Mutex
	rm.fail = func(op string, n int) error {
		if strings.HasSuffix(op, "/a/do") && n <= 2 {
			return errors.New("503")
		}
		return nil
	}
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) {
		f = threeRemote(e, rm, "order", func(st []saga.Step[order]) {
			call := st[1].Call
			st[1].Call = func(ctx context.Context, c saga.Call, s *order) error {
				mu.Lock()
				attempts = append(attempts, c.Attempt)
				mu.Unlock()
				return call(ctx, c, s)
			}
		})
	})
	require.NoError(t, e.start(f, "o1", order{}))
	in := e.wait("o1")
	assert.Equal(t, saga.Done, in.Phase)
	assert.Equal(t, []int{1, 2, 3}, attempts)
	assert.Equal(t, 3, rm.calls["order/o1/a/do"])
	assert.Equal(t, 1, rm.applied["order/o1/a/do"])
	var failed, retries int
	for _, ev := range in.History {
		if ev.Kind == saga.EvStepFailed && ev.Step == "a" {
			failed++
			assert.Contains(t, ev.Err, "retryable: 503")
		}
		if ev.Kind == saga.EvRetry {
			retries++
		}
	}
	assert.Equal(t, 2, failed)
	assert.Equal(t, 2, retries)
}

// TestExhaustedCompensates: b always fails (retryable), so after
// MaxAttempts (3) the saga compensates.
func TestExhaustedCompensates(t *testing.T) {
	rm := newRemote()
	rm.fail = func(op string, n int) error {
		if strings.HasSuffix(op, "/b/do") {
			return errors.New("503")
		}
		return nil
	}
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) { f = threeRemote(e, rm, "order", nil) })
	require.NoError(t, e.start(f, "o1", order{}))
	in := e.wait("o1")
	assert.Equal(t, saga.Compensated, in.Phase)
	assert.Equal(t, 3, rm.calls["order/o1/b/do"])
	assert.Contains(t, in.Reason, "gave up after 3 attempts")
	assert.Equal(t, []string{"do a", "undo a"}, rm.sequence())
	assert.Equal(t, 0, rm.calls["order/o1/c/do"]+rm.calls["order/o1/c/undo"], "c was never reached")
}

// TestAmbiguousAsksQuery: the first call of a lands but its answer is lost
// (timeout); the next attempt asks the query, which says it landed, so a is
// not called again.
func TestAmbiguousAsksQuery(t *testing.T) {
	rm := newRemote()
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) {
		f = threeRemote(e, rm, "order", func(st []saga.Step[order]) {
			st[1].Timeout = 50 * time.Millisecond
			st[1].Query = rm.query
			call := st[1].Call
			st[1].Call = func(ctx context.Context, c saga.Call, s *order) error {
				if err := call(ctx, c, s); err != nil {
					return err
				}
				if c.Attempt == 1 {
					<-ctx.Done() // applied, then the answer is lost
					return ctx.Err()
				}
				return nil
			}
		})
	})
	require.NoError(t, e.start(f, "o1", order{}))
	in := e.wait("o1")
	assert.Equal(t, saga.Done, in.Phase)
	assert.Equal(t, 1, rm.calls["order/o1/a/do"], "the query answered; no second call")
	assert.Equal(t, []string{"do a", "do b", "do c"}, rm.sequence())
}

// TestHangingLateSuccess: a's first attempt times out but lands late; with
// no query the saga retries with the same OpID, then c fails and the saga
// compensates a: the remote's net effect is zero, a applied once.
func TestHangingLateSuccess(t *testing.T) {
	rm := newRemote()
	rm.fail = func(op string, n int) error {
		if strings.HasSuffix(op, "/c/do") {
			return mover.Permanent(errors.New("rejected"))
		}
		return nil
	}
	late := make(chan struct{})
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) {
		f = threeRemote(e, rm, "order", func(st []saga.Step[order]) {
			st[1].Timeout = 30 * time.Millisecond
			call := st[1].Call
			st[1].Call = func(ctx context.Context, c saga.Call, s *order) error {
				if c.Attempt == 1 {
					<-ctx.Done()
					go func() { // the request lands after the client gave up
						defer close(late)
						_ = call(context.Background(), c, s)
					}()
					return ctx.Err()
				}
				<-late
				return call(ctx, c, s)
			}
		})
	})
	require.NoError(t, e.start(f, "o1", order{}))
	in := e.wait("o1")
	assert.Equal(t, saga.Compensated, in.Phase)
	assert.Equal(t, 1, rm.applied["order/o1/a/do"])
	assert.Equal(t, []string{"do a", "do b", "undo b", "undo a"}, rm.sequence())
}

// TestPivot: after the pivot (b), a failing c is retried until the saga is
// stuck, never compensated; an operator's Retry finishes it.
func TestPivot(t *testing.T) {
	rm := newRemote()
	var broken atomic.Bool
	broken.Store(true)
	rm.fail = func(op string, n int) error {
		if strings.HasSuffix(op, "/c/do") && broken.Load() {
			return mover.Permanent(errors.New("down"))
		}
		return nil
	}
	stuck := make(chan saga.Info, 1)
	opts := fastOptions()
	opts.OnStuck = func(in saga.Info) { stuck <- in }
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), opts, func(e *env) {
		f = threeRemote(e, rm, "order", func(st []saga.Step[order]) { st[2].Pivot = true })
	})
	require.NoError(t, e.start(f, "o1", order{}))
	in := e.wait("o1")
	require.Equal(t, saga.Stuck, in.Phase)
	assert.Equal(t, saga.Running, in.StuckIn)
	assert.Equal(t, "c", in.Step)
	assert.Contains(t, in.Reason, "after the pivot")
	assert.Equal(t, []string{"do a", "do b"}, rm.sequence(), "nothing compensated")
	hooked := <-stuck
	assert.Equal(t, "o1", hooked.ID)
	e.counters(saga.Counters{Started: 1, Stuck: 1})

	list, err := e.r.ListStuck(context.Background(), "", 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "o1", list[0].ID)

	broken.Store(false)
	require.NoError(t, e.r.Resolve(context.Background(), "o1", saga.Resolution{Action: saga.ActionRetry, Who: "alice", Note: "service fixed"}))
	in = e.wait("o1")
	assert.Equal(t, saga.Done, in.Phase)
	e.counters(saga.Counters{Started: 1, Done: 1})
	var found bool
	for _, ev := range in.History {
		if ev.Kind == saga.EvResolved {
			found = ev.Who == "alice" && strings.Contains(ev.Note, "service fixed")
		}
	}
	assert.True(t, found, "resolution recorded: %+v", in.History)
	list, err = e.r.ListStuck(context.Background(), "", 10)
	require.NoError(t, err)
	assert.Empty(t, list)
}

// TestStuckUndoResolutions: the undo of a always fails, so compensation is
// stuck; Skip, Abort and Retry each resolve one saga.
func TestStuckUndoResolutions(t *testing.T) {
	rm := newRemote()
	var undoBroken atomic.Bool
	undoBroken.Store(true)
	rm.fail = func(op string, n int) error {
		switch {
		case strings.HasSuffix(op, "/b/do"):
			return mover.Permanent(errors.New("rejected"))
		case strings.HasSuffix(op, "/a/undo") && undoBroken.Load():
			return errors.New("undo 503")
		}
		return nil
	}
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) { f = threeRemote(e, rm, "order", nil) })
	for _, id := range []string{"skip", "abort", "retry"} {
		require.NoError(t, e.start(f, id, order{}))
		in := e.wait(id)
		require.Equal(t, saga.Stuck, in.Phase, id)
		assert.Equal(t, saga.Compensating, in.StuckIn)
		assert.Equal(t, "a", in.Step)
		assert.Contains(t, in.Reason, "undo of step a gave up after 3 attempts")
		assert.Equal(t, 3, in.Attempts)
	}
	e.counters(saga.Counters{Started: 3, Stuck: 3})
	page1, err := e.r.ListStuck(context.Background(), "", 2)
	require.NoError(t, err)
	require.Len(t, page1, 2)
	assert.Equal(t, []string{"abort", "retry"}, []string{page1[0].ID, page1[1].ID})
	page2, err := e.r.ListStuck(context.Background(), page1[1].ID, 2)
	require.NoError(t, err)
	require.Len(t, page2, 1)
	assert.Equal(t, "skip", page2[0].ID)

	ctx := context.Background()
	// Bad resolutions change nothing.
	assert.ErrorIs(t, e.r.Resolve(ctx, "skip", saga.Resolution{Action: "explode", Who: "bob"}), saga.ErrBadAction)
	assert.ErrorIs(t, e.r.Resolve(ctx, "skip", saga.Resolution{Action: saga.ActionSkip}), saga.ErrBadAction)
	assert.ErrorIs(t, e.r.Resolve(ctx, "nope", saga.Resolution{Action: saga.ActionSkip, Who: "bob"}), saga.ErrNotFound)

	require.NoError(t, e.r.Resolve(ctx, "skip", saga.Resolution{Action: saga.ActionSkip, Who: "bob", Note: "refunded by hand"}))
	in := e.wait("skip")
	assert.Equal(t, saga.Compensated, in.Phase)
	assert.Equal(t, 1, e.count("unreserve"), "skip moved on to the local undo")

	require.NoError(t, e.r.Resolve(ctx, "abort", saga.Resolution{Action: saga.ActionAbort, Who: "bob", Note: "customer gone"}))
	in = e.wait("abort")
	assert.Equal(t, saga.Aborted, in.Phase)
	assert.Equal(t, "customer gone", in.Reason)
	assert.Equal(t, 1, e.count("unreserve"), "abort stops: no further compensation")

	undoBroken.Store(false)
	require.NoError(t, e.r.Resolve(ctx, "retry", saga.Resolution{Action: saga.ActionRetry, Who: "bob"}))
	in = e.wait("retry")
	assert.Equal(t, saga.Compensated, in.Phase)
	assert.Equal(t, 1, rm.applied["order/retry/a/do"])
	assert.True(t, rm.undone["order/retry/a/do"])

	// Not stuck any more: every action is refused.
	for _, a := range []saga.Action{saga.ActionRetry, saga.ActionSkip, saga.ActionAbort} {
		err := e.r.Resolve(ctx, "retry", saga.Resolution{Action: a, Who: "bob"})
		assert.ErrorIs(t, err, saga.ErrNotStuck, a)
	}
	e.counters(saga.Counters{Started: 3, Compensated: 2, Aborted: 1})
}

// TestOnEndAtomic: OnEnd's writes commit with the end; an OnEnd that fails
// leaves the saga stuck "ending", and Retry runs it again.
func TestOnEndAtomic(t *testing.T) {
	rm := newRemote()
	var fail atomic.Bool
	fail.Store(true)
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, nil)
	f, err := saga.Define("order", 1,
		saga.Remote("a", rm.do, rm.do),
		saga.Local("confirm", func(tx *stm.Tx, s *order) error { e.bump(tx, "confirm"); return nil }, nil))
	require.NoError(t, err)
	require.NoError(t, f.Register(e.r, &saga.FlowOptions[order]{
		OnEnd: func(tx *stm.Tx, id string, out saga.Outcome, s *order) error {
			st, err := e.r.Status(tx, id)
			if err != nil {
				return err
			}
			if st.Phase != out {
				return errorf("status inside OnEnd: %s", st.Phase)
			}
			e.bump(tx, "end:"+id+":"+string(out))
			if fail.Load() {
				return errors.New("token store full")
			}
			return nil
		},
	}))
	require.NoError(t, e.start(f, "o1", order{}))
	in := e.wait("o1")
	require.Equal(t, saga.Stuck, in.Phase)
	assert.Equal(t, saga.Phase("ending"), in.StuckIn)
	assert.Contains(t, in.Reason, "token store full")
	assert.Equal(t, 0, e.count("end:o1:done"), "the failed OnEnd's writes rolled back")
	assert.Equal(t, 1, e.count("confirm"), "the step before it stands")
	fail.Store(false)
	require.NoError(t, e.r.Resolve(context.Background(), "o1", saga.Resolution{Action: saga.ActionRetry, Who: "ops"}))
	in = e.wait("o1")
	assert.Equal(t, saga.Done, in.Phase)
	assert.Equal(t, 1, e.count("end:o1:done"))
	assert.Equal(t, 1, e.count("confirm"))
}

// TestDuplicateStart: the second start of an id fails with ErrDuplicate and
// the existing status, from any number of concurrent transactions.
func TestDuplicateStart(t *testing.T) {
	rm := newRemote()
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) { f = threeRemote(e, rm, "order", nil) })
	var ok, dup atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			err := e.start(f, "same", order{})
			var de *saga.DuplicateError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &de) && errors.Is(err, saga.ErrDuplicate):
				dup.Add(1)
				if de.Status.Flow != "order" {
					errs <- errorf("duplicate status: %+v", de.Status)
				}
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, int32(1), ok.Load())
	assert.Equal(t, int32(15), dup.Load())
	e.wait("same")
	assert.Equal(t, 1, e.count("reserve"))
	assert.Equal(t, 1, rm.calls["order/same/a/do"])
	e.counters(saga.Counters{Started: 1, Done: 1})
}

// TestLocalStepFailure: a local step's error rolls its writes back and
// compensates what ran before it; in Start, a first local step's failure
// leaves a compensated saga and commits the caller's writes.
func TestLocalStepFailure(t *testing.T) {
	rm := newRemote()
	e := openEnv(t, t.TempDir(), nil, nil)
	f, err := saga.Define("order", 1,
		saga.Local("reserve", func(tx *stm.Tx, s *order) error {
			e.bump(tx, "reserve")
			if s.Qty > 10 {
				return errors.New("not enough stock")
			}
			return nil
		}, func(tx *stm.Tx, s *order) error { e.bump(tx, "unreserve"); return nil }),
		saga.Remote("a", rm.do, rm.do),
		saga.Local("check", func(tx *stm.Tx, s *order) error {
			e.bump(tx, "check")
			return errors.New("fraud")
		}, nil),
	)
	require.NoError(t, err)
	require.NoError(t, f.Register(e.r, nil))
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
		e.bump(tx, "caller")
		return f.Start(tx, "big", order{Qty: 11})
	}))
	in := e.wait("big")
	assert.Equal(t, saga.Compensated, in.Phase)
	assert.Equal(t, 1, e.count("caller"))
	assert.Equal(t, 0, e.count("reserve"), "the failed step's writes rolled back")
	assert.Equal(t, 0, e.count("unreserve"), "a step that failed is not undone")

	require.NoError(t, e.start(f, "small", order{Qty: 1}))
	in = e.wait("small")
	assert.Equal(t, saga.Compensated, in.Phase)
	assert.Contains(t, in.Reason, "fraud")
	assert.Equal(t, 1, e.count("reserve"))
	assert.Equal(t, 0, e.count("check"))
	assert.Equal(t, 1, e.count("unreserve"))
	assert.Equal(t, []string{"do a", "undo a"}, rm.sequence())
	var skipped bool
	for _, ev := range in.History {
		if ev.Kind == saga.EvSkipped && ev.Step == "check" && ev.Note == "never ran" {
			skipped = true
		}
	}
	assert.True(t, skipped, "null compensation of the failed local step: %+v", in.History)
}

// TestDuplicateEntriesDropped delivers stale copies of a finished saga's
// call entries (as a replay or a crash would): none reaches the remote.
func TestDuplicateEntriesDropped(t *testing.T) {
	rm := newRemote()
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) { f = threeRemote(e, rm, "order", nil) })
	require.NoError(t, e.start(f, "o1", order{}))
	e.wait("o1")
	before := map[string]int{}
	for k, v := range rm.calls {
		before[k] = v
	}
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
		for token := uint64(0); token <= 5; token++ {
			payload, err := msgpack.Marshal(map[string]any{"i": "o1", "t": token})
			if err != nil {
				return err
			}
			if err := e.q.Enqueue(tx, effectqueue.Entry{Kind: saga.Kind, Key: "saga/o1", Payload: payload}); err != nil {
				return err
			}
		}
		// And one for a saga that does not exist, and a corrupt one.
		payload, _ := msgpack.Marshal(map[string]any{"i": "nobody", "t": 1})
		if err := e.q.Enqueue(tx, effectqueue.Entry{Kind: saga.Kind, Key: "saga/nobody", Payload: payload}); err != nil {
			return err
		}
		return e.q.Enqueue(tx, effectqueue.Entry{Kind: saga.Kind, Key: "saga/x", Payload: []byte{0xc1}})
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.m.WaitDrained(ctx))
	assert.Equal(t, before, rm.calls, "no call repeated")
	dead, err := e.q.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1, "only the corrupt entry is dead-lettered")
	assert.Contains(t, dead[0].Reason, "undecodable")
	in, err := e.r.Inspect(ctx, "o1")
	require.NoError(t, err)
	assert.Equal(t, saga.Done, in.Phase)
}

// TestOneAttemptInFlightPerSaga runs 24 sagas whose remote steps fail
// sometimes and take a moment: calls of one saga never overlap, while
// different sagas do run in parallel.
func TestOneAttemptInFlightPerSaga(t *testing.T) {
	var mu sync.Mutex
	inFlight := map[string]int{}
	overlap, total, maxTotal := 0, 0, 0
	call := func(ctx context.Context, c saga.Call, s *order) error {
		mu.Lock()
		inFlight[c.Saga]++
		total++
		if inFlight[c.Saga] > 1 {
			overlap++
		}
		maxTotal = max(maxTotal, total)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // a remote's latency, not synchronisation
		mu.Lock()
		inFlight[c.Saga]--
		total--
		mu.Unlock()
		if c.Attempt == 1 && c.Step == "b" {
			return errors.New("503")
		}
		return nil
	}
	var f *saga.Flow[order]
	e := openEnv(t, t.TempDir(), nil, func(e *env) {
		var err error
		f, err = saga.Define("order", 1,
			saga.Remote("a", call, call), saga.Remote("b", call, call), saga.Remote("c", call, call))
		require.NoError(t, err)
		require.NoError(t, f.Register(e.r, nil))
	})
	var ids []string
	for i := range 24 {
		id := "o" + string(rune('a'+i))
		ids = append(ids, id)
		require.NoError(t, e.start(f, id, order{}))
	}
	for _, id := range ids {
		assert.Equal(t, saga.Done, e.wait(id).Phase)
	}
	assert.Zero(t, overlap, "two attempts of one saga overlapped")
	assert.Greater(t, maxTotal, 1, "sagas ran in parallel")
}
