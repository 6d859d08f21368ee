package table_test

import (
	"context"
	"sync"
	"testing"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// BenchmarkMillion: a transfer between two of 1,000,000 records, keys
// 0..N-1, beside its anchor, a sync.Mutex per record in a slice indexed by
// the key (bench/ has the sparse and string shapes and the interleaved
// rounds; this one is for quick profiles).
func BenchmarkMillion(b *testing.B) {
	const n = 1_000_000
	b.Run("engine=zest", func(b *testing.B) {
		db, err := stm.Open(nil)
		if err != nil {
			b.Fatal(err)
		}
		tb, err := table.New[int64, int64](db, "m")
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		for i := 0; i < n; i += 10_000 {
			if err := db.Run(ctx, func(tx *stm.Tx) error {
				for j := i; j < i+10_000; j++ {
					tb.Put(tx, int64(j), 1000)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		x := uint64(1)
		for b.Loop() {
			from, to := millionPair(&x, n)
			if from == to {
				continue
			}
			if err := db.Run(ctx, func(tx *stm.Tx) error {
				a, _ := tb.Get(tx, from)
				c, _ := tb.Get(tx, to)
				tb.Put(tx, from, a-1)
				tb.Put(tx, to, c+1)
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("engine=mutex-per-record", func(b *testing.B) {
		type rec struct {
			mu sync.Mutex
			v  int64
		}
		recs := make([]rec, n)
		b.ReportAllocs()
		b.ResetTimer()
		x := uint64(1)
		for b.Loop() {
			from, to := millionPair(&x, n)
			if from == to {
				continue
			}
			a, c := &recs[min(from, to)], &recs[max(from, to)]
			a.mu.Lock()
			c.mu.Lock()
			recs[from].v--
			recs[to].v++
			c.mu.Unlock()
			a.mu.Unlock()
		}
	})
}

// millionPair steps the generator x and draws two record numbers below n
// from it, the same sequence for every engine.
func millionPair(x *uint64, n int64) (from, to int64) {
	*x = *x*6364136223846793005 + 1442695040888963407
	return int64(*x>>40) % n, int64(*x>>20&0xfffff) % n
}
