package saga_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
)

func noopCall(ctx context.Context, c saga.Call, s *order) error { return nil }
func noopLocal(tx *stm.Tx, s *order) error                      { return nil }

func TestDefineRefusesBadFlows(t *testing.T) {
	remote := saga.Remote("r", noopCall, nil)
	local := saga.Local("l", noopLocal, nil)
	cases := []struct {
		name    string
		flow    string
		version int
		steps   []saga.Step[order]
		want    string
	}{
		{"no steps", "f", 1, nil, "no steps"},
		{"empty flow name", "", 1, []saga.Step[order]{local}, "empty flow name"},
		{"version 0", "f", 0, []saga.Step[order]{local}, "version 0"},
		{"duplicate names", "f", 1, []saga.Step[order]{local, saga.Remote("l", noopCall, nil)}, `duplicate step name "l"`},
		{"empty step name", "f", 1, []saga.Step[order]{{Do: noopLocal}}, "has no name"},
		{"neither", "f", 1, []saga.Step[order]{{Name: "x"}}, "exactly one of Do and Call"},
		{"both", "f", 1, []saga.Step[order]{{Name: "x", Do: noopLocal, Call: noopCall}}, "exactly one of Do and Call"},
		{"local with remote undo", "f", 1, []saga.Step[order]{{Name: "x", Do: noopLocal, CallUndo: noopCall}}, "remote undo"},
		{"remote with local undo", "f", 1, []saga.Step[order]{{Name: "x", Call: noopCall, Undo: noopLocal}}, "local undo"},
		{"negative timeout", "f", 1, []saga.Step[order]{{Name: "x", Call: noopCall, Timeout: -1}}, "negative"},
		{"negative attempts", "f", 1, []saga.Step[order]{{Name: "x", Call: noopCall, Retry: saga.Retry{MaxAttempts: -1}}}, "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := saga.Define(c.flow, c.version, c.steps...)
			assert.Nil(t, f)
			require.ErrorIs(t, err, saga.ErrBadFlow)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_ = remote
}

type withUnexported struct {
	A int
	b int
}
type withFunc struct{ F func() }
type withChan struct{ C []chan int }

// clock encodes a different value each time: it does not round-trip.
type clock struct{ N int64 }

func (c clock) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.EncodeInt(time.Now().UnixNano()) }
func (c *clock) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeInt64()
	c.N = n
	return err
}

func TestStateTypes(t *testing.T) {
	_, err := saga.Define("f", 1, saga.Local("l", func(*stm.Tx, *withUnexported) error { return nil }, nil))
	require.ErrorIs(t, err, saga.ErrBadState)
	assert.Contains(t, err.Error(), "S.b is unexported")
	_, err = saga.Define("f", 1, saga.Local("l", func(*stm.Tx, *withFunc) error { return nil }, nil))
	require.ErrorIs(t, err, saga.ErrBadState)
	_, err = saga.Define("f", 1, saga.Local("l", func(*stm.Tx, *withChan) error { return nil }, nil))
	require.ErrorIs(t, err, saga.ErrBadState)

	// A state whose encoding changes each time is refused at Start, and
	// nothing is recorded.
	e := openEnv(t, t.TempDir(), nil, nil)
	f, err := saga.Define("clock", 1, saga.Local("l", func(*stm.Tx, *clock) error { return nil }, nil))
	require.NoError(t, err)
	require.NoError(t, f.Register(e.r, nil))
	var startErr error
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
		startErr = f.Start(tx, "c1", clock{})
		return nil // commit anyway: Start must have written nothing
	}))
	require.ErrorIs(t, startErr, saga.ErrBadState)
	_, err = e.r.Inspect(context.Background(), "c1")
	require.ErrorIs(t, err, saga.ErrNotFound)

	// Maps of many keys encode deterministically (sorted) and round-trip.
	type bag struct{ Items map[string]int }
	g, err := saga.Define("bag", 1, saga.Local("l", func(tx *stm.Tx, s *bag) error { s.Items["z"] = 26; return nil }, nil))
	require.NoError(t, err)
	require.NoError(t, g.Register(e.r, nil))
	items := map[string]int{}
	for _, k := range strings.Split("abcdefghijklmnopqrstuvwxy", "") {
		items[k] = int(k[0])
	}
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error { return g.Start(tx, "b1", bag{Items: items}) }))
	in := e.wait("b1")
	assert.Equal(t, saga.Done, in.Phase)
	assert.Len(t, in.State.(map[string]any)["Items"], 26)
}

func TestStartRefusesBadInput(t *testing.T) {
	opts := fastOptions()
	opts.MaxIDLen = 16
	opts.MaxStateSize = 64
	e := openEnv(t, t.TempDir(), opts, nil)
	f, err := saga.Define("f", 1, saga.Local("l", func(tx *stm.Tx, s *order) error { e.bump(tx, "ran"); return nil }, nil))
	require.NoError(t, err)
	unregistered, err := saga.Define("g", 1, saga.Local("l", noopLocal, nil))
	require.NoError(t, err)
	require.NoError(t, f.Register(e.r, nil))
	require.ErrorIs(t, f.Register(e.r, nil), saga.ErrRegistered)
	same, err := saga.Define("f", 1, saga.Local("l", noopLocal, nil))
	require.NoError(t, err)
	require.ErrorIs(t, same.Register(e.r, nil), saga.ErrRegistered, "name and version taken")

	cases := []struct {
		name string
		flow *saga.Flow[order]
		id   string
		s    order
		want error
	}{
		{"unregistered", unregistered, "x", order{}, saga.ErrNotRegistered},
		{"empty id", f, "", order{}, saga.ErrBadID},
		{"long id", f, strings.Repeat("x", 17), order{}, saga.ErrBadID},
		{"large state", f, "big", order{Item: strings.Repeat("x", 100)}, saga.ErrStateTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var startErr error
			require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
				startErr = c.flow.Start(tx, c.id, c.s)
				return nil
			}))
			require.ErrorIs(t, startErr, c.want)
			if c.id != "" {
				_, err := e.r.Inspect(context.Background(), c.id)
				require.ErrorIs(t, err, saga.ErrNotFound)
			}
		})
	}
	assert.Equal(t, 0, e.count("ran"))
	assert.Equal(t, saga.Counters{}, e.r.Counters())
	// The longest id accepted works.
	require.NoError(t, e.start(f, strings.Repeat("x", 16), order{}))

	// A transaction of another DB is refused.
	other, err := stm.Open(nil)
	require.NoError(t, err)
	require.NoError(t, other.Run(context.Background(), func(tx *stm.Tx) error {
		require.ErrorIs(t, f.Start(tx, "x", order{}), saga.ErrWrongDB)
		_, err := e.r.Status(tx, "x")
		require.ErrorIs(t, err, saga.ErrWrongDB)
		_, err = e.r.Get(tx, "x")
		require.ErrorIs(t, err, saga.ErrWrongDB)
		return nil
	}))

	// A used Tx is refused with its error.
	var stale *stm.Tx
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error { stale = tx; return nil }))
	require.ErrorIs(t, f.Start(stale, "late", order{}), stm.ErrTxDone)
}

func TestOptionsValidated(t *testing.T) {
	e := openEnv(t, t.TempDir(), nil, nil)
	_, err := saga.New(e.db, e.q, &saga.Options{Timeout: -1, MaxIDLen: -2, Retry: saga.Retry{Base: time.Hour, Max: time.Second}})
	require.Error(t, err)
	for _, field := range []string{"Options.Timeout", "Options.MaxIDLen", "Options.Retry.Base"} {
		assert.Contains(t, err.Error(), field)
	}
	_, err = saga.New(nil, nil, nil)
	require.Error(t, err)
}

func TestMemoAcrossReruns(t *testing.T) {
	e := openEnv(t, t.TempDir(), nil, nil)
	x := stm.NewVar[int](nil, 0)
	var m saga.Memo
	calls, attempts := 0, 0
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
		attempts = tx.Attempt()
		v, _ := x.Load(tx)
		price, err := saga.Remember(&m, "price", func() (int, error) { calls++; return 90, nil })
		if err != nil {
			return err
		}
		if tx.Attempt() == 1 { // a conflicting commit forces a rerun
			done := make(chan error)
			go func() { done <- e.db.Run(context.Background(), func(tx *stm.Tx) error { x.Store(tx, 7); return nil }) }()
			if err := <-done; err != nil {
				return err
			}
		}
		x.Store(tx, v+price)
		return nil
	}))
	assert.GreaterOrEqual(t, attempts, 2, "the body reran")
	assert.Equal(t, 1, calls, "the remote was called once")
	_, err := saga.Remember(&m, "price", func() (string, error) { return "", nil })
	require.Error(t, err, "a different type under the same key")
	// Errors are not remembered.
	n := 0
	_, err = saga.Remember(&m, "flaky", func() (int, error) { n++; return 0, errors.New("down") })
	require.Error(t, err)
	v, err := saga.Remember(&m, "flaky", func() (int, error) { n++; return 5, nil })
	require.NoError(t, err)
	assert.Equal(t, 5, v)
	assert.Equal(t, 2, n)
}
