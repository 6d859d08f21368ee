package table_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

func newBank(b *testing.B, n int) (*stm.DB, *table.Table[int, int64]) {
	b.Helper()
	db, err := stm.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	accounts, err := table.New[int, int64](db, "accounts")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		err := db.Run(ctx, func(tx *stm.Tx) error {
			for j := i; j < min(i+1000, n); j++ {
				accounts.Put(tx, j, 1000)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return db, accounts
}

func transfer(ctx context.Context, db *stm.DB, accounts *table.Table[int, int64], from, to int) error {
	return db.Run(ctx, func(tx *stm.Tx) error {
		a, _ := accounts.Get(tx, from)
		c, _ := accounts.Get(tx, to)
		accounts.Put(tx, from, a-1)
		accounts.Put(tx, to, c+1)
		return nil
	})
}

// BenchmarkTransfer moves 1 unit between two of 1,024 accounts.
func BenchmarkTransfer(b *testing.B) {
	db, accounts := newBank(b, 1024)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		from, to := i&1023, (i*7+1)&1023
		if from == to {
			to = (to + 1) & 1023
		}
		if err := transfer(ctx, db, accounts, from, to); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransferParallel runs transfers from GOMAXPROCS goroutines (use
// -cpu to vary it) over 1,024 accounts.
func BenchmarkTransferParallel(b *testing.B) {
	db, accounts := newBank(b, 1024)
	ctx := context.Background()
	var failed atomic.Bool
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			from, to := r.IntN(1024), r.IntN(1024)
			if from == to {
				continue
			}
			if err := transfer(ctx, db, accounts, from, to); err != nil {
				failed.Store(true)
			}
		}
	})
	if failed.Load() {
		b.Fatal("a transfer failed")
	}
	b.ReportMetric(float64(db.Stats().Reruns)/float64(b.N), "reruns/op")
}

// BenchmarkReadOnly reads two records in a transaction.
func BenchmarkReadOnly(b *testing.B) {
	db, accounts := newBank(b, 1024)
	ctx := context.Background()
	var sink int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		err := db.Run(ctx, func(tx *stm.Tx) error {
			a, _ := accounts.Get(tx, i&1023)
			c, _ := accounts.Get(tx, (i+1)&1023)
			sink += a + c
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	_ = sink
}

// BenchmarkReadOnlyRWMutexMap is the anchor of BenchmarkReadOnly: the same
// two reads from a map under a sync.RWMutex.
func BenchmarkReadOnlyRWMutexMap(b *testing.B) {
	var mu sync.RWMutex
	m := make(map[int]int64, 1024)
	for i := range 1024 {
		m[i] = 1000
	}
	var sink int64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		mu.RLock()
		a, c := m[i&1023], m[(i+1)&1023]
		mu.RUnlock()
		sink += a + c
	}
	_ = sink
}

// BenchmarkInsertDisjointParallel inserts distinct keys, one per
// transaction, from GOMAXPROCS goroutines (-cpu 8 for 8), blindly: the
// reruns per commit measure conflicts between inserts of different keys.
func BenchmarkInsertDisjointParallel(b *testing.B) {
	db, err := stm.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	tb, err := table.New[int, int64](db, "inserts")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var next atomic.Int64
	var failed atomic.Bool
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := int(next.Add(1))
			if err := db.Run(ctx, func(tx *stm.Tx) error { tb.Put(tx, k, 1); return nil }); err != nil {
				failed.Store(true)
			}
		}
	})
	if failed.Load() {
		b.Fatal("an insert failed")
	}
	s := db.Stats()
	b.ReportMetric(float64(s.Reruns)/float64(s.Commits), "reruns/commit")
}

// BenchmarkAbsentGets reads a million distinct absent keys, 1,000 per
// transaction, and reports how much the heap grew (after a GC).
func BenchmarkAbsentGets(b *testing.B) {
	for b.Loop() {
		db, _ := stm.Open(nil)
		tb, _ := table.New[int, int64](db, "absent")
		before := heapAfterGC()
		for i := 0; i < 1_000_000; i += 1000 {
			_ = db.Run(context.Background(), func(tx *stm.Tx) error {
				for k := i; k < i+1000; k++ {
					tb.Get(tx, k)
				}
				return nil
			})
		}
		b.ReportMetric(float64(heapAfterGC()-before)/(1<<20), "heap-growth-MB")
		runtime.KeepAlive(tb)
	}
}

// BenchmarkLenAfterChurn inserts and deletes a million keys (1,000 per
// transaction, not timed), then times Len of the emptied table, and reports
// the heap left over compared with before the inserts.
func BenchmarkLenAfterChurn(b *testing.B) {
	db, _ := stm.Open(nil)
	tb, _ := table.New[int, int64](db, "churn")
	ctx := context.Background()
	before := heapAfterGC()
	for _, del := range []bool{false, true} {
		for i := 0; i < 1_000_000; i += 1000 {
			_ = db.Run(ctx, func(tx *stm.Tx) error {
				for k := i; k < i+1000; k++ {
					if del {
						tb.Delete(tx, k)
					} else {
						tb.Put(tx, k, 1)
					}
				}
				return nil
			})
		}
	}
	left := heapAfterGC() - before
	b.ResetTimer()
	for b.Loop() {
		_ = db.Run(ctx, func(tx *stm.Tx) error {
			if tb.Len(tx) != 0 {
				b.Fatal("table not empty")
			}
			return nil
		})
	}
	b.ReportMetric(float64(left)/(1<<20), "heap-left-MB")
}

func heapAfterGC() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
