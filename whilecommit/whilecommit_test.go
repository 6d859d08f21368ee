package whilecommit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

var errFail = errors.New("fail")

// nestedBody registers hooks over three levels of savepoints, some
// committing and some rolling back, and ends with outcome.
func nestedBody(log *[]string, outcome error) func(tx *stm.Tx) error {
	rec := func(s string) func() { return func() { *log = append(*log, s) } }
	return func(tx *stm.Tx) error {
		whilecommit.Do(tx, rec("c0"))
		whilecommit.OnRollback(tx, rec("r0"))
		_ = tx.Savepoint(func(tx *stm.Tx) error { // S1 commits
			whilecommit.Do(tx, rec("c1"))
			whilecommit.OnRollback(tx, rec("r1"))
			_ = tx.Savepoint(func(tx *stm.Tx) error { // S2 rolls back
				whilecommit.Do(tx, rec("c2"))
				whilecommit.OnRollback(tx, rec("r2"))
				_ = tx.Savepoint(func(tx *stm.Tx) error { // S3 commits inside S2
					whilecommit.Do(tx, rec("c3"))
					whilecommit.OnRollback(tx, rec("r3"))
					return nil
				})
				return errFail
			})
			_ = tx.Savepoint(func(tx *stm.Tx) error { // S4 commits
				whilecommit.Do(tx, rec("c4"))
				whilecommit.OnRollback(tx, rec("r4"))
				return nil
			})
			return nil
		})
		_ = tx.Savepoint(func(tx *stm.Tx) error { // S5 rolls back
			whilecommit.Do(tx, rec("c5"))
			whilecommit.OnRollback(tx, rec("r5"))
			_ = tx.Savepoint(func(tx *stm.Tx) error { // S6 rolls back inside S5
				whilecommit.OnRollback(tx, rec("r6"))
				return errFail
			})
			return errFail
		})
		whilecommit.Do(tx, rec("c7"))
		whilecommit.OnRollback(tx, rec("r7"))
		return outcome
	}
}

// TestGoldenSequence: rolled-back savepoints drop their commit hooks and
// keep their rollback hooks, which run at the end whatever the outcome; all
// hooks run in registration order.
func TestGoldenSequence(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outcome error
		want    []string
	}{
		{"commit", nil, []string{"c0", "c1", "r2", "r3", "c4", "r5", "r6", "c7"}},
		{"rollback", errFail, []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := stm.Open(nil)
			var log []string
			err := db.Run(context.Background(), nestedBody(&log, tc.outcome))
			assert.ErrorIs(t, err, tc.outcome)
			assert.Equal(t, tc.want, log)
		})
	}
}

// TestRerunAttemptsDropHooks: hooks of attempts that rerun never run.
func TestRerunAttemptsDropHooks(t *testing.T) {
	db, _ := stm.Open(nil)
	v := stm.NewVar(nil, 0)
	var ran []int
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		x, _ := v.Load(tx)
		attempt := tx.Attempt()
		whilecommit.Do(tx, func() { ran = append(ran, attempt) })
		whilecommit.OnRollback(tx, func() { ran = append(ran, -attempt) })
		if attempt < 3 { // make this attempt stale
			require.NoError(t, testutil.Elsewhere(func() error {
				return db.Run(context.Background(), func(tx *stm.Tx) error {
					v.Store(tx, x+1)
					return nil
				})
			}))
		}
		v.Store(tx, x+10)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []int{3}, ran)
}

// TestConcurrentHooksExactlyOnce: under contention, each committed
// transaction's hook runs once and no rerun attempt's does.
func TestConcurrentHooksExactlyOnce(t *testing.T) {
	db, _ := stm.Open(nil)
	hot := stm.NewVar(nil, 0)
	var mu sync.Mutex
	ran := map[int]int{}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 100 {
				id := g*100 + i
				_ = db.Run(context.Background(), func(tx *stm.Tx) error {
					x, _ := hot.Load(tx)
					whilecommit.Do(tx, func() { mu.Lock(); ran[id]++; mu.Unlock() })
					if id%10 == 0 && tx.Attempt() == 1 {
						// Make this attempt stale for sure, so reruns happen
						// whatever the scheduling.
						_ = testutil.Elsewhere(func() error {
							return db.Run(context.Background(), func(tx *stm.Tx) error {
								y, _ := hot.Load(tx)
								hot.Store(tx, y+1)
								return nil
							})
						})
					}
					hot.Store(tx, x+1)
					return nil
				})
			}
		})
	}
	wg.Wait()
	assert.Len(t, ran, 1600)
	for id, n := range ran {
		if n != 1 {
			t.Fatalf("hook of tx %d ran %d times", id, n)
		}
	}
	assert.GreaterOrEqual(t, db.Stats().Reruns, uint64(160), "every tenth transaction reruns at least once")
}

func TestPanickingHook(t *testing.T) {
	var buf bytes.Buffer
	db, _ := stm.Open(&stm.Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	v := stm.NewVar(nil, 0)
	var after bool
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		v.Store(tx, 1)
		whilecommit.Do(tx, func() { panic("hook exploded") })
		whilecommit.Do(tx, func() { after = true })
		return nil
	})
	require.NoError(t, err, "the commit stands")
	assert.True(t, after, "the next hook still runs")
	assert.Equal(t, whilecommit.Stats{Ran: 2, Panicked: 1}, whilecommit.StatsOf(db))
	assert.Contains(t, buf.String(), "hook exploded")
	x, _ := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (int, error) { x, _ := v.Load(tx); return x, nil })
	assert.Equal(t, 1, x)
}

// TestHookStartsTransaction: hooks run after locks are released, so a hook
// may run a transaction on the records its transaction wrote.
func TestHookStartsTransaction(t *testing.T) {
	db, _ := stm.Open(nil)
	v := stm.NewVar(nil, 0)
	var inner error
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		v.Store(tx, 1)
		whilecommit.Do(tx, func() {
			inner = db.Run(context.Background(), func(tx *stm.Tx) error {
				x, _ := v.Load(tx)
				v.Store(tx, x+1)
				return nil
			})
		})
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, inner)
	x, _ := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (int, error) { x, _ := v.Load(tx); return x, nil })
	assert.Equal(t, 2, x)
}

func ExampleDo() {
	db, _ := stm.Open(nil)
	score := stm.NewVar(nil, 0)
	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		s, _ := score.Load(tx)
		score.Store(tx, s+100)
		// Runs once, after the commit, however often the body reruns.
		whilecommit.Do(tx, func() { fmt.Println("committed: announce the new score") })
		whilecommit.OnRollback(tx, func() { fmt.Println("not printed") })
		return nil
	})
	// Output: committed: announce the new score
}

func ExampleOnRollback() {
	db, _ := stm.Open(nil)
	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		whilecommit.OnRollback(tx, func() { fmt.Println("rolled back: release the reserved slot") })
		return errors.New("match full")
	})
	// Output: rolled back: release the reserved slot
}
