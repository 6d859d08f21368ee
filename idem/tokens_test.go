package idem_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

var errBusiness = errors.New("business rule refused")

// pay is a business transaction guarded by a token: it adds amount to the
// order's paid total once per key and returns a receipt.
func pay(ctx context.Context, db *stm.DB, tokens *idem.Tokens, paid *table.Table[string, int], key idem.Key, amount int) ([]byte, bool, error) {
	type out struct {
		receipt []byte
		replay  bool
	}
	fp := idem.Fingerprint([]byte(key.ID), []byte{byte(amount)})
	o, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (out, error) {
		prev, replay, err := tokens.Begin(tx, key, fp)
		if err != nil || replay {
			return out{prev, replay}, err
		}
		if amount <= 0 {
			return out{}, errBusiness
		}
		total, _ := paid.Get(tx, key.ID)
		paid.Put(tx, key.ID, total+amount)
		receipt := []byte("receipt " + key.ID)
		return out{receipt: receipt}, tokens.Finish(tx, key, receipt)
	})
	return o.receipt, o.replay, err
}

func TestBeginFinishReplay(t *testing.T) {
	ctx := context.Background()
	db, tokens := openMem(t, nil)
	paid, err := table.New[string, int](db, "paid")
	require.NoError(t, err)
	key := idem.Key{Scope: "alice", ID: "order-1", Scene: "pay"}

	r, replay, err := pay(ctx, db, tokens, paid, key, 10)
	require.NoError(t, err)
	assert.False(t, replay)
	assert.Equal(t, "receipt order-1", string(r))
	for range 3 {
		r2, replay, err := pay(ctx, db, tokens, paid, key, 10)
		require.NoError(t, err)
		assert.True(t, replay)
		assert.Equal(t, r, r2)
	}
	total, _ := stm.RunValue(ctx, db, func(tx *stm.Tx) (int, error) { v, _ := paid.Get(tx, "order-1"); return v, nil })
	assert.Equal(t, 10, total, "the operation ran once")

	// Another scope or scene is another operation.
	_, replay, err = pay(ctx, db, tokens, paid, idem.Key{Scope: "bob", ID: "order-1", Scene: "pay"}, 10)
	require.NoError(t, err)
	assert.False(t, replay)
	st := tokens.Stats()
	assert.Equal(t, uint64(2), st.Begun)
	assert.Equal(t, uint64(3), st.Replays)

	in, err := tokens.Lookup(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, "done", in.State)
	assert.Equal(t, len(r), in.ResultSize)
	assert.Len(t, in.Fingerprint, 2*idem.FingerprintSize)
	assert.Equal(t, key, in.Key)
	assert.WithinDuration(t, in.Created.Add(24*time.Hour), in.Expires, time.Second)
}

func TestFailedBodyLeavesNoToken(t *testing.T) {
	ctx := context.Background()
	db, tokens := openMem(t, nil)
	paid, err := table.New[string, int](db, "paid")
	require.NoError(t, err)
	key := idem.Key{ID: "order-2"}

	_, _, err = pay(ctx, db, tokens, paid, key, 0)
	require.ErrorIs(t, err, errBusiness)
	_, err = tokens.Lookup(ctx, key)
	require.ErrorIs(t, err, idem.ErrNotFound, "the claim rolled back with the body")

	// A panic rolls back too.
	require.Panics(t, func() {
		_ = db.Run(ctx, func(tx *stm.Tx) error {
			_, _, err := tokens.Begin(tx, key, nil)
			require.NoError(t, err)
			panic("handler bug")
		})
	})
	assert.Equal(t, 0, idem.Count(tokens))

	// A savepoint that fails rolls back its claim, the outer body goes on.
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		err := tx.Savepoint(func(tx *stm.Tx) error {
			if _, _, err := tokens.Begin(tx, key, nil); err != nil {
				return err
			}
			return errBusiness
		})
		require.ErrorIs(t, err, errBusiness)
		return nil
	}))
	assert.Equal(t, 0, idem.Count(tokens))

	// The retry runs the operation.
	_, replay, err := pay(ctx, db, tokens, paid, key, 5)
	require.NoError(t, err)
	assert.False(t, replay)
	assert.Equal(t, uint64(1), tokens.Stats().Begun, "only committed claims count")
}

func TestMismatch(t *testing.T) {
	ctx := context.Background()
	db, tokens := openMem(t, nil)
	key := idem.Key{ID: "k"}
	fpA, fpB := idem.Fingerprint([]byte("a")), idem.Fingerprint([]byte("b"))
	require.NoError(t, run(t, db, func(tx *stm.Tx) error {
		if _, _, err := tokens.Begin(tx, key, fpA); err != nil {
			return err
		}
		return tokens.Finish(tx, key, []byte("A"))
	}))
	for _, fp := range [][]byte{fpB, nil} {
		_, err := begin(t, db, tokens, key, fp)
		require.ErrorIs(t, err, idem.ErrMismatch)
	}
	r, err := begin(t, db, tokens, key, fpA)
	require.NoError(t, err)
	assert.Equal(t, beginResult{[]byte("A"), true}, r)

	// A key begun without a fingerprint mismatches one with.
	_, err = begin(t, db, tokens, idem.Key{ID: "nofp"}, nil)
	require.NoError(t, err)
	_, err = begin(t, db, tokens, idem.Key{ID: "nofp"}, fpA)
	require.ErrorIs(t, err, idem.ErrMismatch)

	// The answers were counted once each, although the bodies returned them
	// (rolled back).
	st := tokens.Stats()
	assert.Equal(t, uint64(3), st.Mismatches)
	in, err := tokens.Lookup(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, 1, in.ResultSize, "a mismatch changes nothing")
}

func TestClaimWithoutFinishReplaysEmpty(t *testing.T) {
	db, tokens := openMem(t, nil)
	key := idem.Key{ID: "k"}
	_, err := begin(t, db, tokens, key, nil)
	require.NoError(t, err)
	in, err := tokens.Lookup(context.Background(), key)
	require.NoError(t, err)
	assert.Equal(t, "claimed", in.State)
	r, err := begin(t, db, tokens, key, nil)
	require.NoError(t, err)
	assert.Equal(t, beginResult{nil, true}, r, "the operation committed: it must not run again")
	// Finish may still store the result later.
	require.NoError(t, run(t, db, func(tx *stm.Tx) error { return tokens.Finish(tx, key, []byte("late")) }))
	r, err = begin(t, db, tokens, key, nil)
	require.NoError(t, err)
	assert.Equal(t, beginResult{[]byte("late"), true}, r)
}

func TestFinishErrors(t *testing.T) {
	ctx := context.Background()
	db, tokens := openMem(t, &idem.Options{MaxResultSize: 8})
	key := idem.Key{ID: "k"}
	err := run(t, db, func(tx *stm.Tx) error { return tokens.Finish(tx, key, nil) })
	require.ErrorIs(t, err, idem.ErrNotBegun)

	require.NoError(t, run(t, db, func(tx *stm.Tx) error {
		_, _, err := tokens.Begin(tx, key, nil)
		require.NoError(t, err)
		require.ErrorIs(t, tokens.Finish(tx, key, make([]byte, 9)), idem.ErrResultTooLarge)
		return nil
	}))
	in, err := tokens.Lookup(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, idem.Info{Key: key, State: "claimed", Created: in.Created, Expires: in.Expires}, in, "nothing stored")

	require.NoError(t, run(t, db, func(tx *stm.Tx) error { return tokens.Finish(tx, key, make([]byte, 8)) }))
	err = run(t, db, func(tx *stm.Tx) error { return tokens.Finish(tx, key, nil) })
	require.ErrorIs(t, err, idem.ErrFinished)
	r, err := begin(t, db, tokens, key, nil)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 8), r.result)
}

func TestOnceAndForget(t *testing.T) {
	ctx := context.Background()
	db, tokens := openMem(t, nil)
	paid, err := table.New[string, int](db, "paid")
	require.NoError(t, err)
	key := idem.Key{Scope: "shop", ID: "order-7", Scene: "pay"}
	payOnce := func() error {
		return run(t, db, func(tx *stm.Tx) error {
			if err := tokens.Once(tx, key); err != nil {
				return err
			}
			n, _ := paid.Get(tx, key.ID)
			paid.Put(tx, key.ID, n+1)
			return nil
		})
	}
	require.NoError(t, payOnce())
	for range 3 {
		require.ErrorIs(t, payOnce(), idem.ErrDuplicate)
	}
	assert.Equal(t, uint64(3), tokens.Stats().Duplicates)

	// Begin on a Once key without fingerprint replays an empty result.
	r, err := begin(t, db, tokens, key, nil)
	require.NoError(t, err)
	assert.Equal(t, beginResult{nil, true}, r)

	found, err := tokens.Discard(ctx, key)
	require.NoError(t, err)
	assert.True(t, found)
	found, err = tokens.Discard(ctx, key)
	require.NoError(t, err)
	assert.False(t, found)
	require.NoError(t, payOnce(), "a forgotten token lets the operation run again")
	n, _ := stm.RunValue(ctx, db, func(tx *stm.Tx) (int, error) { v, _ := paid.Get(tx, key.ID); return v, nil })
	assert.Equal(t, 2, n)

	// Forget inside a transaction that rolls back forgets nothing.
	err = run(t, db, func(tx *stm.Tx) error {
		found, err := tokens.Forget(tx, key)
		require.NoError(t, err)
		require.True(t, found)
		return errBusiness
	})
	require.ErrorIs(t, err, errBusiness)
	require.ErrorIs(t, payOnce(), idem.ErrDuplicate)
	assert.Equal(t, uint64(1), tokens.Stats().Forgotten)
}

func TestLinkSettle(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{TTL: time.Hour, Now: clk.Now})
	key := idem.Key{ID: "transfer-1", Scene: "saga"}
	fp := idem.Fingerprint([]byte("100 EUR"))

	require.NoError(t, run(t, db, func(tx *stm.Tx) error {
		if _, _, err := tokens.Begin(tx, key, fp); err != nil {
			return err
		}
		return tokens.Link(tx, key, "saga-17")
	}))
	in, err := tokens.Lookup(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, "linked", in.State)
	assert.Equal(t, "saga-17", in.Ref)
	assert.True(t, in.Expires.IsZero())

	_, err = begin(t, db, tokens, key, fp)
	require.ErrorIs(t, err, idem.ErrInProgress)
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Once(tx, key) }), idem.ErrInProgress)
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Finish(tx, key, nil) }), idem.ErrInProgress)
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Link(tx, key, "saga-18") }), idem.ErrInProgress)
	_, err = begin(t, db, tokens, key, idem.Fingerprint([]byte("other")))
	require.ErrorIs(t, err, idem.ErrMismatch, "a mismatch is reported before in-progress")
	assert.Equal(t, uint64(2), tokens.Stats().InProgress)

	// A linked token does not expire, however long the operation runs.
	clk.Advance(10 * time.Hour)
	n, err := tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = begin(t, db, tokens, key, fp)
	require.ErrorIs(t, err, idem.ErrInProgress)

	// Settle checks the reference.
	err = run(t, db, func(tx *stm.Tx) error { return tokens.Settle(tx, key, "saga-99", []byte("x")) })
	require.ErrorIs(t, err, idem.ErrNotLinked)
	err = run(t, db, func(tx *stm.Tx) error { return tokens.Settle(tx, idem.Key{ID: "none"}, "saga-17", nil) })
	require.ErrorIs(t, err, idem.ErrNotLinked)

	// Settle in a transaction that rolls back changes nothing.
	err = run(t, db, func(tx *stm.Tx) error {
		require.NoError(t, tokens.Settle(tx, key, "saga-17", []byte("rolled back")))
		return errBusiness
	})
	require.ErrorIs(t, err, errBusiness)
	_, err = begin(t, db, tokens, key, fp)
	require.ErrorIs(t, err, idem.ErrInProgress)

	require.NoError(t, run(t, db, func(tx *stm.Tx) error { return tokens.Settle(tx, key, "saga-17", []byte("done: 100 EUR")) }))
	r, err := begin(t, db, tokens, key, fp)
	require.NoError(t, err)
	assert.Equal(t, beginResult{[]byte("done: 100 EUR"), true}, r)
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Settle(tx, key, "saga-17", nil) }), idem.ErrNotLinked,
		"settled once")
	in, err = tokens.Lookup(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, "done", in.State)
	assert.Equal(t, clk.Now().Add(time.Hour).UTC(), in.Expires, "the TTL starts at Settle")
	assert.Equal(t, uint64(1), tokens.Stats().Settled)

	// Link needs a claimed token.
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Link(tx, idem.Key{ID: "none"}, "r") }), idem.ErrNotBegun)
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Link(tx, key, "r") }), idem.ErrFinished)

	clk.Advance(time.Hour + 2*time.Second)
	n, err = tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	r, err = begin(t, db, tokens, key, fp)
	require.NoError(t, err)
	assert.False(t, r.replay)
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	db, tokens := openMem(t, &idem.Options{MaxKeySize: 16, MaxResultSize: 4})
	good := idem.Key{ID: "ok"}
	require.NoError(t, run(t, db, func(tx *stm.Tx) error {
		if _, _, err := tokens.Begin(tx, good, nil); err != nil {
			return err
		}
		return tokens.Link(tx, good, "ref")
	}))
	badKeys := map[string]idem.Key{
		"empty":            {},
		"empty id":         {Scope: "s", Scene: "x"},
		"nul in id":        {ID: "a\x00b"},
		"nul in scope":     {Scope: "\x00", ID: "a"},
		"nul in scene":     {ID: "a", Scene: "\x00"},
		"over MaxKeySize":  {ID: strings.Repeat("x", 15)},
		"huge":             {ID: strings.Repeat("x", 1<<20)},
		"parts over limit": {Scope: "123456", ID: "1234567", Scene: "12"},
	}
	type op struct {
		name string
		fn   func(tx *stm.Tx, k idem.Key) error
	}
	ops := []op{
		{"Begin", func(tx *stm.Tx, k idem.Key) error { _, _, err := tokens.Begin(tx, k, nil); return err }},
		{"Finish", func(tx *stm.Tx, k idem.Key) error { return tokens.Finish(tx, k, nil) }},
		{"Once", func(tx *stm.Tx, k idem.Key) error { return tokens.Once(tx, k) }},
		{"Forget", func(tx *stm.Tx, k idem.Key) error { _, err := tokens.Forget(tx, k); return err }},
		{"Link", func(tx *stm.Tx, k idem.Key) error { return tokens.Link(tx, k, "r") }},
		{"Settle", func(tx *stm.Tx, k idem.Key) error { return tokens.Settle(tx, k, "r", nil) }},
	}
	for name, k := range badKeys {
		for _, o := range ops {
			t.Run(name+"/"+o.name, func(t *testing.T) {
				require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return o.fn(tx, k) }), idem.ErrBadKey)
			})
		}
		_, err := tokens.Lookup(ctx, k)
		require.ErrorIs(t, err, idem.ErrBadKey)
		_, err = tokens.Discard(ctx, k)
		require.ErrorIs(t, err, idem.ErrBadKey)
	}
	// The longest valid key is accepted.
	require.NoError(t, run(t, db, func(tx *stm.Tx) error { return tokens.Once(tx, idem.Key{ID: strings.Repeat("x", 14)}) }))

	for _, n := range []int{0, 1, idem.FingerprintSize - 1, idem.FingerprintSize + 1, 1 << 16} {
		err := run(t, db, func(tx *stm.Tx) error { _, _, err := tokens.Begin(tx, idem.Key{ID: "fp"}, make([]byte, n)); return err })
		require.ErrorIs(t, err, idem.ErrBadFingerprint, "%d bytes", n)
	}
	for _, ref := range []string{"", strings.Repeat("r", idem.MaxRefSize+1)} {
		require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Settle(tx, good, ref, nil) }), idem.ErrBadRef)
	}
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error { return tokens.Settle(tx, good, "ref", make([]byte, 5)) }), idem.ErrResultTooLarge)
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error {
		_, _, err := tokens.Begin(tx, idem.Key{ID: "ref"}, nil)
		require.NoError(t, err)
		for _, ref := range []string{"", strings.Repeat("r", idem.MaxRefSize+1)} {
			require.ErrorIs(t, tokens.Link(tx, idem.Key{ID: "ref"}, ref), idem.ErrBadRef)
		}
		return errBusiness
	}), errBusiness)

	// Nothing but the two good tokens was stored.
	assert.Equal(t, 2, idem.Count(tokens))
	in, err := tokens.Lookup(ctx, good)
	require.NoError(t, err)
	assert.Equal(t, "linked", in.State)
}

func TestMisuse(t *testing.T) {
	db, tokens := openMem(t, nil)
	other, err := stm.Open(nil)
	require.NoError(t, err)
	err = other.Run(context.Background(), func(tx *stm.Tx) error { _, _, err := tokens.Begin(tx, idem.Key{ID: "k"}, nil); return err })
	require.ErrorIs(t, err, idem.ErrWrongDB)

	var stale *stm.Tx
	require.NoError(t, run(t, db, func(tx *stm.Tx) error { stale = tx; return nil }))
	_, _, err = tokens.Begin(stale, idem.Key{ID: "k"}, nil)
	require.ErrorIs(t, err, stm.ErrTxDone)
	require.ErrorIs(t, tokens.Finish(stale, idem.Key{ID: "k"}, nil), stm.ErrTxDone)

	_, err = idem.New(db, "tokens", nil)
	require.Error(t, err, "the name is taken")

	_, err = idem.New(db, "x", &idem.Options{TTL: -1, MaxResultSize: -1, MaxKeySize: 2, SweepBatch: -1, SweepRate: -1, Granularity: time.Nanosecond})
	require.Error(t, err)
	for _, f := range []string{"TTL", "MaxResultSize", "MaxKeySize", "SweepBatch", "SweepRate", "Granularity"} {
		assert.Contains(t, err.Error(), "Options."+f)
	}

	// Cancelled context: ctx.Err() and nothing changed.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = tokens.Lookup(ctx, idem.Key{ID: "k"})
	require.ErrorIs(t, err, context.Canceled)
	_, err = tokens.Discard(ctx, idem.Key{ID: "k"})
	require.ErrorIs(t, err, context.Canceled)
	_, err = tokens.Expire(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, tokens.Sweep(ctx), context.Canceled)
}

// TestRerunClaimsOnce forces a rerun of a body that claimed a
// token and checks that the rerun attempt's claim leaves no trace: the
// token is begun once and indexed once.
func TestRerunClaimsOnce(t *testing.T) {
	ctx := context.Background()
	db, tokens := openMem(t, nil)
	x := stm.NewVar[int](nil, 0)
	key := idem.Key{ID: "k"}
	attempts := 0
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		attempts++
		if _, _, err := tokens.Begin(tx, key, nil); err != nil {
			return err
		}
		v, _ := x.Load(tx)
		if tx.Attempt() == 1 {
			done := make(chan error)
			go func() { done <- db.Run(ctx, func(tx *stm.Tx) error { x.Store(tx, v+1); return nil }) }()
			require.NoError(t, <-done)
		}
		x.Store(tx, v+1)
		return tokens.Finish(tx, key, []byte("r"))
	}))
	assert.Equal(t, 2, attempts)
	st := tokens.Stats()
	assert.Equal(t, uint64(1), st.Begun)
	assert.Equal(t, 1, st.Indexed)
}
