package stm_test

import (
	"context"
	"testing"

	"github.com/zest-stm/zest/stm"
)

// BenchmarkIncrement: a read-modify-write of one Var.
func BenchmarkIncrement(b *testing.B) {
	db, _ := stm.Open(nil)
	v := stm.NewVar[int64](nil, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = db.Run(ctx, func(tx *stm.Tx) error {
			x, _ := v.Load(tx)
			v.Store(tx, x+1)
			return nil
		})
	}
}

// BenchmarkReadTwo: a read-only transaction over two Vars.
func BenchmarkReadTwo(b *testing.B) {
	db, _ := stm.Open(nil)
	x, y := stm.NewVar[int64](nil, 1), stm.NewVar[int64](nil, 2)
	ctx := context.Background()
	var sink int64
	b.ReportAllocs()
	for b.Loop() {
		_ = db.Run(ctx, func(tx *stm.Tx) error {
			a, _ := x.Load(tx)
			c, _ := y.Load(tx)
			sink += a + c
			return nil
		})
	}
	_ = sink
}

// BenchmarkIncrementParallel: GOMAXPROCS goroutines on one hot Var.
func BenchmarkIncrementParallel(b *testing.B) {
	db, _ := stm.Open(nil)
	v := stm.NewVar[int64](nil, 0)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = db.Run(ctx, func(tx *stm.Tx) error {
				x, _ := v.Load(tx)
				v.Store(tx, x+1)
				return nil
			})
		}
	})
	b.ReportMetric(float64(db.Stats().Reruns)/float64(b.N), "reruns/op")
}

// BenchmarkStructValue: a transfer-sized update of a value stored behind a
// pointer (a struct larger than a word).
func BenchmarkStructValue(b *testing.B) {
	type account struct {
		Balance, Version int64
		Name             string
	}
	db, _ := stm.Open(nil)
	v := stm.NewVar(nil, account{Name: "alice"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = db.Run(ctx, func(tx *stm.Tx) error {
			a, _ := v.Load(tx)
			a.Balance++
			v.Store(tx, a)
			return nil
		})
	}
}
