package idem_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
)

func beginN(t testing.TB, db *stm.DB, tokens *idem.Tokens, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
			for j := i; j < min(i+100, n); j++ {
				if _, _, err := tokens.Begin(tx, idem.Key{ID: fmt.Sprint(prefix, j)}, nil); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// TestExpireLooksOnlyAtDueTokens: with 10 tokens due and 5,000 not, Expire
// removes the 10 and takes only their 10 entries from the index.
func TestExpireLooksOnlyAtDueTokens(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{TTL: time.Hour, Now: clk.Now, SweepBatch: 3})
	beginN(t, db, tokens, "old", 10)
	clk.Advance(30 * time.Minute)
	beginN(t, db, tokens, "new", 5000)
	require.Equal(t, 5010, tokens.Stats().Indexed)

	n, err := tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing is due yet")
	assert.Equal(t, 5010, tokens.Stats().Indexed)

	clk.Advance(30*time.Minute + time.Second)
	n, err = tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Equal(t, 10, n)
	st := tokens.Stats()
	assert.Equal(t, 5000, st.Indexed, "the live tokens' entries were not touched")
	assert.Equal(t, uint64(10), st.Expired)
	assert.Equal(t, 5000, idem.Count(tokens))

	clk.Advance(time.Hour)
	n, err = tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Equal(t, 5000, n)
	assert.Equal(t, 0, idem.Count(tokens))
	assert.Equal(t, 0, tokens.Stats().Indexed)
}

// TestReplayAfterExpiryRunsAgain: an expired token no longer replays,
// whether or not the sweeper removed it; the new token it is replaced by
// survives the old token's index entry.
func TestReplayAfterExpiryRunsAgain(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{TTL: time.Minute, Now: clk.Now})
	key := idem.Key{ID: "k"}
	fin := func(res string) error {
		return run(t, db, func(tx *stm.Tx) error {
			_, replay, err := tokens.Begin(tx, key, nil)
			if err != nil || replay {
				return fmt.Errorf("replay=%v err=%v", replay, err)
			}
			return tokens.Finish(tx, key, []byte(res))
		})
	}
	require.NoError(t, fin("first"))
	clk.Advance(time.Minute - time.Nanosecond)
	r, err := begin(t, db, tokens, key, nil)
	require.NoError(t, err)
	assert.Equal(t, beginResult{[]byte("first"), true}, r, "live until its expiry")

	clk.Advance(time.Nanosecond)
	_, err = tokens.Lookup(ctx, key)
	require.ErrorIs(t, err, idem.ErrNotFound, "expired, though not swept")
	require.NoError(t, fin("second"), "expired and not swept: runs again")

	clk.Advance(30 * time.Second)
	n, err := tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "the old entry finds the renewed token and leaves it")
	r, err = begin(t, db, tokens, key, nil)
	require.NoError(t, err)
	assert.Equal(t, beginResult{[]byte("second"), true}, r)

	clk.Advance(time.Minute)
	n, err = tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, fin("third"), "expired and swept: runs again")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", d, msg)
		}
		<-tick.C
	}
}

// TestSweepRateBound: the sweeper looks at no more than SweepRate tokens a
// second. 1,200 due tokens at 4,000/s in batches of 100 take at least
// (1,200-100)/4,000 s, since the first batch runs at once.
func TestSweepRateBound(t *testing.T) {
	db, tokens := openMem(t, &idem.Options{TTL: time.Millisecond, Granularity: time.Millisecond, SweepRate: 4000, SweepBatch: 100})
	const n = 1200
	beginN(t, db, tokens, "k", n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- tokens.Sweep(ctx) }()
	waitFor(t, 20*time.Second, func() bool { return tokens.Stats().Expired == n }, "all tokens swept")
	took := time.Since(start)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.GreaterOrEqual(t, took, time.Duration(n-100)*time.Second/4000)
	assert.Equal(t, 0, idem.Count(tokens))
}

// TestSweepWakesForEarlierBucket: a sweeper idle with nothing indexed (it
// would sleep up to a minute) removes tokens begun later within a moment.
func TestSweepWakesForEarlierBucket(t *testing.T) {
	db, tokens := openMem(t, &idem.Options{TTL: 20 * time.Millisecond, Granularity: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tokens.Sweep(ctx) }()
	beginN(t, db, tokens, "k", 50)
	waitFor(t, 10*time.Second, func() bool { return tokens.Stats().Expired == 50 }, "tokens swept")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestSweepRacesBegin: while the sweeper removes expired tokens, other
// goroutines begin the same keys again. Invariant: a token begun after its
// predecessor expired is never removed before its own expiry, so every key
// ends with a live token.
func TestSweepRacesBegin(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{TTL: time.Minute, Now: clk.Now, SweepBatch: 7})
	const n = 400
	beginN(t, db, tokens, "k", n)
	clk.Advance(time.Minute + time.Second)

	var wg sync.WaitGroup
	var sweepErr error
	var swept int
	wg.Go(func() { swept, sweepErr = tokens.Expire(ctx) })
	errs := make([]error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				replay, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (bool, error) {
					_, replay, err := tokens.Begin(tx, idem.Key{ID: fmt.Sprint("k", i)}, nil)
					return replay, err
				})
				if err == nil && replay {
					err = fmt.Errorf("k%d replayed an expired token", i)
				}
				if err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, sweepErr)
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, n, idem.Count(tokens), "every renewed token survived")
	for i := range n {
		_, err := tokens.Lookup(ctx, idem.Key{ID: fmt.Sprint("k", i)})
		require.NoError(t, err)
	}
	t.Logf("the sweeper removed %d of %d before they were renewed", swept, n)
}

// TestSweepStopsOnClosedDB: Sweep returns the DB's error instead of
// spinning, and the batch it could not remove stays indexed.
func TestSweepStopsOnClosedDB(t *testing.T) {
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{TTL: time.Minute, Now: clk.Now})
	beginN(t, db, tokens, "k", 10)
	clk.Advance(2 * time.Minute)
	require.NoError(t, db.Close())
	err := tokens.Sweep(context.Background())
	require.ErrorIs(t, err, stm.ErrClosed)
	assert.Equal(t, 10, tokens.Stats().Indexed)
	assert.Zero(t, tokens.Stats().Expired)
}
