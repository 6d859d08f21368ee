package table_test

import (
	"context"
	"math/rand/v2"
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
