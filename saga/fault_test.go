package saga_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
)

// TestPanicsInUserCode panics in every user callback and checks that each
// becomes the failure of its step (or a stuck saga), never a crash or a
// half-written record.
func TestPanicsInUserCode(t *testing.T) {
	rm := newRemote()
	var onStuck atomic.Int32
	opts := fastOptions()
	opts.OnStuck = func(saga.Info) { onStuck.Add(1); panic("OnStuck panics") }
	e := openEnv(t, t.TempDir(), opts, nil)
	define := func(name string, steps ...saga.Step[order]) *saga.Flow[order] {
		f, err := saga.Define(name, 1, steps...)
		require.NoError(t, err)
		require.NoError(t, f.Register(e.r, nil))
		return f
	}
	reserve := saga.Local("reserve",
		func(tx *stm.Tx, s *order) error { e.bump(tx, "reserve:"+s.Item); return nil },
		func(tx *stm.Tx, s *order) error { e.bump(tx, "unreserve:"+s.Item); return nil })
	boom := func(tx *stm.Tx, s *order) error { e.bump(tx, "boom:"+s.Item); panic("local boom") }

	localDo := define("local-do", reserve, saga.Remote("a", rm.do, rm.do), saga.Local("after", boom, nil))
	callPanics := define("call", reserve, saga.Remote("a", func(ctx context.Context, c saga.Call, s *order) error { panic("call boom") }, rm.do))
	undoPanics := define("undo", saga.Local("reserve", noopLocal, boom),
		saga.Remote("a", func(context.Context, saga.Call, *order) error { return errors.New("no") }, nil))
	classify := define("classify", reserve, saga.Step[order]{Name: "a",
		Call:     func(context.Context, saga.Call, *order) error { return errors.New("x") },
		Classify: func(error) saga.Class { panic("classify boom") }})
	query := define("query", reserve, saga.Step[order]{Name: "a", Timeout: 20 * time.Millisecond,
		Call:  func(ctx context.Context, c saga.Call, s *order) error { <-ctx.Done(); return ctx.Err() },
		Query: func(context.Context, saga.Call, *order) (bool, error) { panic("query boom") }})

	cases := []struct {
		flow   *saga.Flow[order]
		want   saga.Phase
		reason string
	}{
		{localDo, saga.Compensated, "panic: local boom"},
		{callPanics, saga.Compensated, "panic in step a: call boom"},
		{undoPanics, saga.Stuck, "panic: local boom"},
		{classify, saga.Compensated, "failed permanently"},
		{query, saga.Compensated, "query boom"},
	}
	for _, c := range cases {
		id := c.flow.Name()
		require.NoError(t, e.start(c.flow, id, order{Item: id}))
		in := e.wait(id)
		assert.Equal(t, c.want, in.Phase, id)
		assert.Contains(t, in.Reason, c.reason, id)
		assert.Equal(t, 0, e.count("boom:"+id), "%s: the panicking body's writes rolled back", id)
	}
	assert.Equal(t, 1, e.count("unreserve:local-do"))
	assert.Equal(t, 1, e.count("unreserve:call"))
	assert.Equal(t, int32(1), onStuck.Load(), "OnStuck ran (and its panic was recovered)")

	// OnEnd panics: stuck while ending.
	f, err := saga.Define("end", 1, reserve)
	require.NoError(t, err)
	require.NoError(t, f.Register(e.r, &saga.FlowOptions[order]{OnEnd: func(tx *stm.Tx, id string, _ saga.Outcome, _ *order) error {
		e.bump(tx, "ended")
		panic("end boom")
	}}))
	// In Start, the panic reaches the caller and nothing is recorded.
	require.PanicsWithValue(t, "end boom", func() { _ = e.start(f, "end-in-start", order{Item: "s"}) })
	_, err = e.r.Inspect(context.Background(), "end-in-start")
	require.ErrorIs(t, err, saga.ErrNotFound)
	assert.Equal(t, 0, e.count("reserve:s"))

	// Run by the runner (after a remote step), it leaves the saga stuck.
	g, err := saga.Define("end2", 1, saga.Remote("a", rm.do, nil))
	require.NoError(t, err)
	require.NoError(t, g.Register(e.r, &saga.FlowOptions[order]{OnEnd: func(tx *stm.Tx, id string, _ saga.Outcome, _ *order) error {
		e.bump(tx, "ended")
		panic("end boom")
	}}))
	require.NoError(t, e.start(g, "end2", order{}))
	in := e.wait("end2")
	assert.Equal(t, saga.Stuck, in.Phase)
	assert.Contains(t, in.Reason, "panic: end boom")
	assert.Equal(t, 0, e.count("ended"))
	require.NoError(t, e.r.Resolve(context.Background(), "end2", saga.Resolution{Action: saga.ActionSkip, Who: "ops", Note: "ended by hand"}))
	in = e.wait("end2")
	assert.Equal(t, saga.Done, in.Phase)
	assert.Equal(t, 0, e.count("ended"), "Skip ends without OnEnd")
}

// TestRetryPersistsAcrossRestart: a failed attempt's backoff and count are
// on disk; after a restart the retry fires with attempt 2 and the same OpID.
func TestRetryPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	var failing atomic.Bool
	failing.Store(true)
	type seen struct {
		op      string
		attempt int
	}
	calls := make(chan seen, 16)
	step := saga.Step[order]{Name: "a", Retry: saga.Retry{Base: 200 * time.Millisecond, Max: 400 * time.Millisecond},
		Call: func(ctx context.Context, c saga.Call, s *order) error {
			calls <- seen{c.OpID, c.Attempt}
			if failing.Load() {
				return errors.New("503")
			}
			return nil
		}}
	e := openEnv(t, dir, nil, nil)
	f, err := saga.Define("order", 1, step)
	require.NoError(t, err)
	require.NoError(t, f.Register(e.r, nil))
	require.NoError(t, e.start(f, "o1", order{}))
	first := <-calls
	assert.Equal(t, 1, first.attempt)
	require.Eventually(t, func() bool {
		in, err := e.r.Inspect(context.Background(), "o1")
		return err == nil && in.NextRetry != nil && in.Attempts == 1
	}, 5*time.Second, time.Millisecond)
	e.close()
	failing.Store(false)

	e2 := openEnv(t, dir, nil, func(e *env) {
		f, err := saga.Define("order", 1, step)
		require.NoError(t, err)
		require.NoError(t, f.Register(e.r, nil))
	})
	in := e2.wait("o1")
	assert.Equal(t, saga.Done, in.Phase)
	second := <-calls
	assert.Equal(t, seen{first.op, 2}, second)
	e2.counters(saga.Counters{Started: 1, Done: 1}) // Started loaded from the records
}

// TestDefinitionChanged: a saga recorded under a flow whose steps changed
// goes stuck with the reason instead of running the wrong code; a version
// with the same steps picks it up.
func TestDefinitionChanged(t *testing.T) {
	for _, compatible := range []bool{false, true} {
		t.Run(map[bool]string{false: "incompatible", true: "compatible"}[compatible], func(t *testing.T) {
			dir := t.TempDir()
			inCall := make(chan struct{}, 1)
			e := openEnv(t, dir, nil, nil)
			e.shutdownWait = 20 * time.Millisecond
			v1, err := saga.Define("order", 1, saga.Step[order]{Name: "a", Timeout: time.Hour,
				Call: func(ctx context.Context, c saga.Call, s *order) error {
					inCall <- struct{}{}
					<-ctx.Done() // until the process stops
					return ctx.Err()
				}})
			require.NoError(t, err)
			require.NoError(t, v1.Register(e.r, nil))
			require.NoError(t, e.start(v1, "o1", order{}))
			<-inCall
			e.close()

			var ran atomic.Int32
			e2 := openEnv(t, dir, nil, func(e *env) {
				steps := []saga.Step[order]{saga.Remote("a-renamed", noopCall, nil)}
				if compatible {
					steps = []saga.Step[order]{saga.Remote("a", func(context.Context, saga.Call, *order) error { ran.Add(1); return nil }, nil)}
				}
				v2, err := saga.Define("order", 2, steps...)
				require.NoError(t, err)
				require.NoError(t, v2.Register(e.r, nil))
			})
			in := e2.wait("o1")
			if compatible {
				assert.Equal(t, saga.Done, in.Phase)
				assert.Equal(t, int32(1), ran.Load())
				return
			}
			assert.Equal(t, saga.Stuck, in.Phase)
			assert.True(t, strings.Contains(in.Reason, "matches no registered version"), in.Reason)
			err = e2.r.Resolve(context.Background(), "o1", saga.Resolution{Action: saga.ActionRetry, Who: "ops"})
			require.ErrorIs(t, err, saga.ErrBadAction, "retrying cannot help while the definition is missing")
			require.NoError(t, e2.r.Resolve(context.Background(), "o1", saga.Resolution{Action: saga.ActionAbort, Who: "ops", Note: "flow retired"}))
			assert.Equal(t, saga.Aborted, e2.wait("o1").Phase)
		})
	}
}

// TestConcurrentResolve: operators resolving the same stuck saga at once;
// exactly one resolution applies, the others get ErrNotStuck, and the
// history records one resolution.
func TestConcurrentResolve(t *testing.T) {
	rm := newRemote()
	rm.fail = func(op string, n int) error {
		if strings.HasSuffix(op, "/a/do") {
			return errors.New("down")
		}
		return nil
	}
	e := openEnv(t, t.TempDir(), nil, nil)
	// After the pivot (p), a failing step is stuck, not compensated.
	h, err := saga.Define("order3", 1, saga.Step[order]{Name: "p", Do: noopLocal, Pivot: true}, saga.Step[order]{Name: "a", Call: rm.do})
	require.NoError(t, err)
	require.NoError(t, h.Register(e.r, nil))
	require.NoError(t, e.start(h, "o3", order{}))
	in := e.wait("o3")
	require.Equal(t, saga.Stuck, in.Phase)

	var ok, notStuck atomic.Int32
	errs := make(chan error, 8)
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			action := []saga.Action{saga.ActionSkip, saga.ActionAbort}[i%2]
			err := e.r.Resolve(context.Background(), "o3", saga.Resolution{Action: action, Who: "op" + string(rune('a'+i))})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, saga.ErrNotStuck):
				notStuck.Add(1)
			default:
				errs <- err
			}
		}()
	}
	for range 8 {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, int32(1), ok.Load())
	assert.Equal(t, int32(7), notStuck.Load())
	in = e.wait("o3")
	assert.True(t, in.Phase == saga.Done || in.Phase == saga.Aborted, in.Phase)
	n := 0
	for _, ev := range in.History {
		if ev.Kind == saga.EvResolved {
			n++
		}
	}
	assert.Equal(t, 1, n)
}
