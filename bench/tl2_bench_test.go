package main

import (
	"context"
	"testing"
)

// The parts of tl2-min's cost, for reading the floor: an empty Run (pool,
// closure, defer), a read-only Run of two cells, and a transfer (two reads,
// two buffered writes, the commit's two CAS, a clock add and four stores).
func BenchmarkTL2(b *testing.B) {
	db := newTL2DB()
	cells := make([]tl2Cell, 1024)
	for i := range cells {
		db.initCell(&cells[i], initialBalance)
	}
	ctx := context.Background()
	b.Run("EmptyRun", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = db.Run(ctx, func(tx *tl2Tx) error { return nil })
		}
	})
	b.Run("ReadOnly2", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			a, c := i&1023, (i+512)&1023
			_ = db.Run(ctx, func(tx *tl2Tx) error {
				_ = tx.Load(&cells[a]) + tx.Load(&cells[c])
				return nil
			})
			i++
		}
	})
	b.Run("Transfer", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			a, c := i&1023, (i+512)&1023
			_ = db.Run(ctx, func(tx *tl2Tx) error {
				x, y := tx.Load(&cells[a]), tx.Load(&cells[c])
				tx.Store(&cells[a], x-1)
				tx.Store(&cells[c], y+1)
				return nil
			})
			i++
		}
	})
}
