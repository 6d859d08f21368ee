package table

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/stm"
)

// TestDenseLayout: keys handed out in order live in place; sparse and
// negative keys in the hash index; Get, Len, Scan and Delete see both as
// one table.
func TestDenseLayout(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, err := New[int64, int64](db, "dense")
	require.NoError(t, err)
	ctx := context.Background()
	const n = 5000
	for i := int64(0); i < n; i += 500 {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			for k := i; k < i+500; k++ {
				tb.Put(tx, k, k*10)
			}
			return nil
		}))
	}
	sparse := []int64{-1, -1 << 62, 1 << 40, 1<<31 + 7}
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		for _, k := range sparse {
			tb.Put(tx, k, k)
		}
		return nil
	}))
	assert.Equal(t, n, tb.ix.mu.nDense, "keys in order go dense")
	assert.Equal(t, len(sparse), tb.ix.mu.n, "sparse keys go to the hash index")

	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		for k := int64(0); k < n; k++ {
			v, ok := tb.Get(tx, k)
			require.True(t, ok)
			require.Equal(t, k*10, v)
		}
		for _, k := range sparse {
			v, ok := tb.Get(tx, k)
			require.True(t, ok)
			require.Equal(t, k, v)
		}
		_, ok := tb.Get(tx, n) // in an allocated chunk, never written
		assert.False(t, ok)
		_, ok = tb.Get(tx, n+100_000) // no chunk
		assert.False(t, ok)
		assert.Equal(t, n+len(sparse), tb.Len(tx))
		seen := map[int64]bool{}
		tb.Scan(tx, func(k, v int64) bool { seen[k] = true; return true })
		assert.Len(t, seen, n+len(sparse))
		return nil
	}))

	// Deletes and reinserts of dense keys.
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		for k := int64(0); k < n; k += 2 {
			require.True(t, tb.Delete(tx, k))
		}
		return nil
	}))
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		assert.Equal(t, n/2+len(sparse), tb.Len(tx))
		_, ok := tb.Get(tx, 0)
		assert.False(t, ok)
		tb.Put(tx, 0, 7)
		return nil
	}))
	v, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (int64, error) { v, _ := tb.Get(tx, 0); return v, nil })
	require.NoError(t, err)
	assert.Equal(t, int64(7), v)
}

// TestDenseKeyFirstInHash: a key created in the hash index before its chunk
// existed is still found, updated and counted once after the chunk appears.
func TestDenseKeyFirstInHash(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, err := New[int, int](db, "late")
	require.NoError(t, err)
	ctx := context.Background()
	const late = 5000
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { tb.Put(tx, late, 1); return nil }))
	require.Equal(t, 1, tb.ix.mu.n, "too far ahead for the dense layout")
	for i := 0; i < late+500; i += 250 {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			for k := i; k < i+250; k++ {
				if k != late {
					tb.Put(tx, k, k)
				}
			}
			return nil
		}))
	}
	require.NotNil(t, tb.ix.dense.Load().chunks[late>>denseShift].Load(), "the late key's chunk exists")
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		tb.Update(tx, late, func(v int, _ bool) (int, bool) { return v + 1, true })
		return nil
	}))
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		v, ok := tb.Get(tx, late)
		assert.True(t, ok)
		assert.Equal(t, 2, v)
		assert.Equal(t, late+500, tb.Len(tx))
		return nil
	}))
}

// TestDenseConcurrentInserts: goroutines insert interleaved dense keys and
// transfer between them; the total is kept and every key is found once.
func TestDenseConcurrentInserts(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, err := New[int, int](db, "conc")
	require.NoError(t, err)
	ctx := context.Background()
	const workers, per = 4, 2000
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			var err error
			for i := 0; i < per && err == nil; i++ {
				k := i*workers + w
				err = db.Run(ctx, func(tx *stm.Tx) error {
					tb.Put(tx, k, 100)
					if k > 0 {
						from := r.IntN(k)
						if v, ok := tb.Get(tx, from); ok {
							tb.Put(tx, from, v-1)
							tb.Put(tx, k, 101)
						}
					}
					return nil
				})
			}
			errs <- err
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		sum, n := 0, 0
		tb.Scan(tx, func(k, v int) bool { sum += v; n++; return true })
		assert.Equal(t, workers*per, n)
		assert.Equal(t, workers*per*100, sum)
		assert.Equal(t, workers*per, tb.Len(tx))
		return nil
	}))
}
