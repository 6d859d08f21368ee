package table_test

import (
	"context"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Bag holds references (a map), so it must implement Clone.
type Bag struct {
	Items map[string]int
}

func (b Bag) Clone() Bag { return Bag{Items: maps.Clone(b.Items)} }

type leaky struct{ Items []string }

func TestRefusesValuesWithoutClone(t *testing.T) {
	db, _ := stm.Open(nil)
	_, err := table.New[int, leaky](db, "leaky")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must implement Clone()")
	_, err = table.New[int, *int](db, "ptr")
	require.Error(t, err)
	_, err = table.New[string, struct {
		Name string
		HP   [4]int
	}](db, "flat")
	assert.NoError(t, err, "strings and arrays are copied by assignment")
}

func TestDuplicateName(t *testing.T) {
	db, _ := stm.Open(nil)
	_, err := table.New[int, int](db, "t")
	require.NoError(t, err)
	_, err = table.New[int, string](db, "t")
	assert.ErrorIs(t, err, stm.ErrNameTaken)
}

func TestValueIsolation(t *testing.T) {
	db, _ := stm.Open(nil)
	bags, err := table.New[string, Bag](db, "bags")
	require.NoError(t, err)
	ctx := context.Background()
	mine := Bag{Items: map[string]int{"potion": 2}}
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		bags.Put(tx, "alice", mine)
		b, _ := bags.Get(tx, "alice")
		b.Items["potion"] = 99 // a private copy, even of our own write
		return nil
	}))
	mine.Items["potion"] = 50 // the caller's map after Put
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		b, ok := bags.Get(tx, "alice")
		require.True(t, ok)
		b.Items["sword"] = 1 // mutation without Put
		return nil
	}))
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		b, _ := bags.Get(tx, "alice")
		assert.Equal(t, map[string]int{"potion": 2}, b.Items)
		return nil
	}))
}

func TestGetPutDeleteUpdate(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, _ := table.New[string, int](db, "kv")
	ctx := context.Background()
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		_, ok := tb.Get(tx, "a")
		assert.False(t, ok)
		tb.Put(tx, "a", 1)
		tb.Put(tx, "b", 2)
		assert.True(t, tb.Delete(tx, "b"))
		assert.False(t, tb.Delete(tx, "b"))
		assert.False(t, tb.Delete(tx, "never"))
		tb.Update(tx, "a", func(v int, found bool) (int, bool) { return v + 10, true })
		tb.Update(tx, "c", func(v int, found bool) (int, bool) {
			assert.False(t, found)
			return 7, true
		})
		assert.Equal(t, 2, tb.Len(tx))
		return nil
	}))
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		got := map[string]int{}
		tb.Scan(tx, func(k string, v int) bool { got[k] = v; return true })
		assert.Equal(t, map[string]int{"a": 11, "c": 7}, got)
		tb.Update(tx, "a", func(int, bool) (int, bool) { return 0, false })
		assert.False(t, tb.Has(tx, "a"))
		return nil
	}))
}

// TestGrowth inserts enough keys to grow the index many times while
// readers run, and checks every key is found afterwards.
func TestGrowth(t *testing.T) {
	db, _ := stm.Open(nil)
	tb, _ := table.New[int, int](db, "grow")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				k := i*4 + g
				_ = db.Run(context.Background(), func(tx *stm.Tx) error { tb.Put(tx, k, k); return nil })
			}
		})
	}
	wg.Wait()
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		for k := range 20000 {
			v, ok := tb.Get(tx, k)
			if !ok || v != k {
				t.Fatalf("key %d: %d %v", k, v, ok)
			}
		}
		return nil
	}))
}

// TestBank: transfers between accounts while read-only transactions check,
// inside their bodies, that the total never changes.
func TestBank(t *testing.T) {
	const accounts, writers, checkers, transfers = 64, 6, 2, 3000
	db, _ := stm.Open(nil)
	tb, _ := table.New[int, int64](db, "accounts")
	ctx := context.Background()
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		for i := range accounts {
			tb.Put(tx, i, 100)
		}
		return nil
	}))
	const total = accounts * 100
	var bad, checks atomic.Int64
	var done atomic.Bool
	var wg, wgc sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range transfers {
				a, b, n := r.IntN(accounts), r.IntN(accounts), int64(r.IntN(50))
				_ = db.Run(ctx, func(tx *stm.Tx) error {
					x, _ := tb.Get(tx, a)
					y, _ := tb.Get(tx, b)
					if a == b || x < n {
						return nil
					}
					tb.Put(tx, a, x-n)
					tb.Put(tx, b, y+n)
					return nil
				})
			}
		})
	}
	for range checkers {
		wgc.Go(func() {
			for !done.Load() {
				_ = db.Run(ctx, func(tx *stm.Tx) error {
					var sum int64
					tb.Scan(tx, func(_ int, v int64) bool { sum += v; return true })
					checks.Add(1)
					if sum != total {
						bad.Add(1)
					}
					return nil
				})
			}
		})
	}
	wg.Wait()
	done.Store(true)
	wgc.Wait()
	var sum int64
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		sum = 0
		tb.Scan(tx, func(_ int, v int64) bool { sum += v; return true })
		return nil
	}))
	assert.Equal(t, int64(total), sum)
	assert.Zero(t, bad.Load(), "a body saw a wrong total")
	assert.Positive(t, checks.Load())
	t.Logf("%d checks, stats %+v", checks.Load(), db.Stats())
}
