package idem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
)

var errRollback = errors.New("savepoint rolls back")

// TestOwnWritesMirrorTable drives random sequences of every transactional
// method over a few keys inside one transaction, in nested savepoints that
// randomly roll back, and checks after each call that what the
// transaction's txState holds for a key is exactly what the table gives
// that transaction: the state is a cache of the transaction's own writes
// and must never answer differently from the table. Sequences are long
// enough to switch the state from a linear scan to its map. The seed is
// printed; IDEM_OWN_SEED replays one, ZEST_STRESS=1 runs 50 seeds.
func TestOwnWritesMirrorTable(t *testing.T) {
	for _, seed := range testutil.Seeds(t, "IDEM_OWN_SEED") {
		ownWrites(t, seed)
	}
}

func ownWrites(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0))
	db, err := stm.Open(nil)
	require.NoError(t, err)
	toks, err := New(db, "tokens", &Options{TTL: time.Hour, MaxResultSize: 8, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	keys := make([]Key, 12)
	for i := range keys {
		keys[i] = Key{Scope: "s", ID: fmt.Sprint("k", i), Scene: "x"}
	}
	ctx := context.Background()
	checks := 0
	check := func(tx *stm.Tx, where string) {
		s, err := toks.state(tx)
		require.NoError(t, err)
		for _, key := range keys {
			w := s.find(key)
			if w == nil {
				continue
			}
			k, err := key.encode(toks.opts.MaxKeySize)
			require.NoError(t, err)
			require.Equal(t, k, w.k, "seed %d, %s: table key of %v", seed, where, key)
			tok, ok := toks.tab.Get(tx, k)
			require.Equal(t, !w.deleted, ok, "seed %d, %s: %v present", seed, where, key)
			if ok {
				require.Equal(t, tok, w.tok, "seed %d, %s: %v", seed, where, key)
			}
			checks++
		}
	}
	var body func(tx *stm.Tx, depth int, where string) error
	body = func(tx *stm.Tx, depth int, where string) error {
		for i := range 6 + r.IntN(10) {
			key := keys[r.IntN(len(keys))]
			op := r.IntN(8)
			at := fmt.Sprintf("%s/%d op %d on %s", where, i, op, key.ID)
			switch op {
			case 0, 1:
				var fp []byte
				if r.IntN(2) == 0 {
					fp = Fingerprint([]byte(key.ID))
				}
				_, _, _ = toks.Begin(tx, key, fp)
			case 2:
				_ = toks.Finish(tx, key, []byte(fmt.Sprint(r.IntN(1000))))
			case 3:
				_ = toks.Once(tx, key)
			case 4:
				_, _ = toks.Forget(tx, key)
			case 5:
				_ = toks.Link(tx, key, "ref")
			case 6:
				_ = toks.Settle(tx, key, "ref", []byte("done"))
			case 7:
				if depth < 3 {
					err := tx.Savepoint(func(tx *stm.Tx) error { return body(tx, depth+1, at) })
					if err != nil && !errors.Is(err, errRollback) {
						return err
					}
				}
			}
			check(tx, at)
		}
		if depth > 0 && r.IntN(2) == 0 {
			return errRollback
		}
		return nil
	}
	for round := range 30 {
		err := db.Run(ctx, func(tx *stm.Tx) error { return body(tx, 0, fmt.Sprint("round ", round)) })
		require.NoError(t, err, "seed %d", seed)
	}
	require.Positive(t, checks)
	t.Logf("seed %d: %d cached tokens checked against the table", seed, checks)
}

// TestOneClockReadingPerTransaction: a transaction reads Options.Now once,
// and its calls agree on the time even if the clock moves meanwhile: a
// token it began does not expire under it before Finish.
func TestOneClockReadingPerTransaction(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reads := 0
	db, err := stm.Open(nil)
	require.NoError(t, err)
	toks, err := New(db, "tokens", &Options{TTL: time.Minute, Now: func() time.Time { reads++; return now }})
	require.NoError(t, err)
	key := Key{ID: "order"}
	err = db.Run(context.Background(), func(tx *stm.Tx) error {
		if _, _, err := toks.Begin(tx, key, nil); err != nil {
			return err
		}
		now = now.Add(time.Hour) // past the TTL
		if err := toks.Once(tx, Key{ID: "other"}); err != nil {
			return err
		}
		return toks.Finish(tx, key, []byte("r"))
	})
	require.NoError(t, err)
	assert.Equal(t, 1, reads)
	// The next transaction reads the clock again: the token has expired.
	_, err = toks.Lookup(context.Background(), key)
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestCountersAcrossSavepoints: an answer given inside a savepoint that
// rolls back is still counted (once, when the transaction ends), while a
// token begun there is not counted begun nor indexed.
func TestCountersAcrossSavepoints(t *testing.T) {
	db, err := stm.Open(nil)
	require.NoError(t, err)
	toks, err := New(db, "tokens", nil)
	require.NoError(t, err)
	ctx := context.Background()
	done := Key{ID: "done"}
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { return toks.Once(tx, done) }))
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		err := tx.Savepoint(func(tx *stm.Tx) error {
			_, replay, err := toks.Begin(tx, done, nil)
			require.NoError(t, err)
			require.True(t, replay)
			require.ErrorIs(t, toks.Once(tx, done), ErrDuplicate)
			_, _, err = toks.Begin(tx, Key{ID: "new"}, nil)
			require.NoError(t, err)
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)
		return nil
	}))
	st := toks.Stats()
	assert.Equal(t, uint64(1), st.Begun, "only the Once that committed")
	assert.Equal(t, uint64(1), st.Replays)
	assert.Equal(t, uint64(1), st.Duplicates)
	assert.Equal(t, 1, st.Indexed)
}
