package table

import (
	"context"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/stm"
)

// TestStripesDiffer pins the stripes of the keys that
// TestAbsentGetConflictsOnlyWithItsKey relies on.
func TestStripesDiffer(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, err := New[int, int](db, "s")
	require.NoError(t, err)
	s7 := stripeOf(tb.ix.hash(7))
	for _, k := range []int{1000, 1001} {
		if stripeOf(tb.ix.hash(k)) == s7 {
			t.Skipf("keys 7 and %d share a stripe with this hash seed", k)
		}
	}
}

// TestAbsentGetsCreateNoRecords: Gets of a million distinct absent keys
// leave the index as it was (each created a record, never reclaimed, before
// the fix: ~90 MB).
func TestAbsentGetsCreateNoRecords(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, err := New[int, int](db, "absent")
	require.NoError(t, err)
	before := tb.ix.size()
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	for i := 0; i < n; i += 1000 {
		require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
			for k := i; k < i+1000; k++ {
				if _, ok := tb.Get(tx, k); ok {
					t.Errorf("key %d present", k)
				}
			}
			return nil
		}))
	}
	assert.Equal(t, before, tb.ix.size())
	assert.Zero(t, tb.ix.mu.n)
}

// TestDeletedRecordsReclaimed: after inserting and deleting many keys the
// index shrinks back (negative keys: they stay in the hash index), so Len of the emptied table walks a small table.
func TestDeletedRecordsReclaimed(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, err := New[int, int](db, "churn")
	require.NoError(t, err)
	ctx := context.Background()
	n := 200_000
	if testing.Short() || raceEnabled {
		n = 50_000
	}
	const batch = 500
	for i := 0; i < n; i += batch {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			for k := i; k < i+batch; k++ {
				tb.Put(tx, -k, k)
			}
			return nil
		}))
	}
	grown := tb.ix.size()
	for i := 0; i < n; i += batch {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			for k := i; k < i+batch; k++ {
				require.True(t, tb.Delete(tx, -k))
			}
			return nil
		}))
	}
	t.Logf("index: %d slots full, %d after deleting everything (%d records left)", grown, tb.ix.size(), tb.ix.mu.n)
	assert.LessOrEqual(t, tb.ix.size(), 4096)
	got, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (int, error) { return tb.Len(tx), nil })
	require.NoError(t, err)
	assert.Zero(t, got)
	// Reinsert: the table still works, and keys read back.
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { tb.Put(tx, 5, 55); return nil }))
	v, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (int, error) { v, _ := tb.Get(tx, 5); return v, nil })
	require.NoError(t, err)
	assert.Equal(t, 55, v)
	runtime.KeepAlive(tb)
}

// Negative keys stay in the hash index, whose records are reclaimed
// (small integer keys go to the dense layout, whose records are not).
const far1, far2 = -1, -2

// TestRetiredRecordRerunsItsReader: a rebuild that drops a record a
// running transaction read leaves that transaction correct: its write goes
// to the record the index holds, and a read of the dropped record reruns.
func TestRetiredRecordRerunsItsReader(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, err := New[int, int](db, "retire")
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { tb.Put(tx, far1, 1); return nil }))
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { tb.Delete(tx, far1); return nil }))
	attempts := 0
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		attempts++
		_, ok := tb.Get(tx, far1) // reads the deleted record
		if attempts == 1 {
			done := make(chan struct{})
			go func() {
				defer close(done)
				tb.ix.mu.Lock()
				tb.ix.rebuildLocked(tb.ix.tab.Load())
				tb.ix.mu.Unlock()
			}()
			<-done
		}
		if !ok {
			tb.Put(tx, far1, 10+attempts)
		}
		return nil
	}))
	v, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (int, error) { v, _ := tb.Get(tx, far1); return v, nil })
	require.NoError(t, err)
	assert.Equal(t, 10+attempts, v, "the write landed in the record the index holds")
	assert.Equal(t, 1, tb.ix.mu.n)

	// A record held across the rebuild and read after it reruns the attempt.
	e := tb.ix.getOrCreate(far2)
	tb.ix.mu.Lock()
	tb.ix.rebuildLocked(tb.ix.tab.Load())
	tb.ix.mu.Unlock()
	attempts = 0
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		attempts++
		if attempts == 1 {
			e.v.Present(tx) // the dropped record
		}
		return nil
	}))
	assert.Equal(t, 2, attempts)
	assert.Equal(t, uint64(1), db.Stats().RerunsByCause[stm.CauseStale])
}
