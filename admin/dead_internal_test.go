package admin

import (
	"context"
	"fmt"
	"testing"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// TestEachDead: eachDead visits the dead letters in sequence order, each
// once, across page boundaries (pages of 1 to more than all of them), stops
// at limit, and stops when fn says so. The model is one DeadLetters call
// for all of them.
func TestEachDead(t *testing.T) {
	ctx := context.Background()
	db, err := stm.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	const n = 7
	if err := db.Run(ctx, func(tx *stm.Tx) error {
		for i := range n + 3 {
			if err := q.Enqueue(tx, effectqueue.Entry{Kind: "k", Key: fmt.Sprint("key", i%3)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Dead-letter 7 of the 10 entries, so that the dead letters' sequence
	// numbers have gaps (entries 1, 5 and 9 stay pending).
	items, err := q.Read(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		if i%4 == 1 {
			continue
		}
		if err := q.DeadLetter(ctx, it.Seq, "test"); err != nil {
			t.Fatal(err)
		}
	}
	all, err := q.DeadLetters(ctx, 0, 100)
	if err != nil || len(all) != n {
		t.Fatalf("model: %d dead letters, err %v", len(all), err)
	}
	for _, page := range []int{1, 2, 3, n - 1, n, n + 1, 1000} {
		for _, limit := range []int{0, 1, 2, n - 1, n, n + 1, 1 << 30} {
			for _, stopAfter := range []int{1, 3, n, n + 5} {
				var got []uint64
				err := eachDead(ctx, q, page, limit, func(d effectqueue.DeadLetter) bool {
					got = append(got, d.Seq)
					return len(got) < stopAfter
				})
				if err != nil {
					t.Fatal(err)
				}
				wantN := min(n, limit, stopAfter)
				if len(got) != wantN {
					t.Fatalf("page %d, limit %d, stop after %d: visited %v, want the first %d of %v", page, limit, stopAfter, got, wantN, all)
				}
				for i, s := range got {
					if s != all[i].Seq {
						t.Fatalf("page %d, limit %d, stop after %d: visited %v, want a prefix of %v", page, limit, stopAfter, got, all)
					}
				}
			}
		}
	}
	q.Close()
	if err := eachDead(ctx, q, 10, 10, func(effectqueue.DeadLetter) bool { return true }); err == nil {
		t.Fatal("a closed queue: no error")
	}
}
