package stress

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// TestStorageFaults runs durable bank transfers that each enqueue a
// receipt, and makes the storage fail mid-run (the Badger the queue writes
// to is closed under it), cycle after cycle; one cycle in three closes the
// queue under the transfers instead (Close racing commits). It checks:
//   - every commit the fault catches gets an error of the engine, never the
//     storage's error as its identity: stm.ErrOutcomeUnknown (applied in
//     memory, the write failed) or stm.ErrStopped (refused), and then every
//     commit is refused with stm.ErrStopped and the cause; when the queue is
//     closed instead, effectqueue.ErrClosed or stm.ErrNoLog;
//   - memory and disk do not silently diverge: after reopening, the
//     balances equal the initial ones plus exactly the receipts on disk,
//     and the total is unchanged;
//   - every transfer acknowledged before the fault is on disk;
//   - after the fault clears (reopen), transfers go on.
func TestStorageFaults(t *testing.T) {
	s := newScenario(t, "storage faults")
	defer s.finish()
	const accounts, initial = 16, 1000
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(s.seed, 0))
	end := time.Now().Add(*duration)
	acked := map[string]bool{}
	var txs, faults, queueCloses uint64
	for cycle := 0; cycle == 0 || until(end); cycle++ {
		bdb, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithMemTableSize(16 << 20))
		if err != nil {
			t.Fatal(err)
		}
		db, _ := stm.Open(&stm.Options{Logger: quiet})
		q, err := effectqueue.Open(db, &effectqueue.Options{Badger: bdb, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		accts, err := table.NewDurable[int, int64](db, "accounts", nil)
		if err != nil {
			t.Fatal(err)
		}
		if cycle == 0 {
			_ = db.Run(context.Background(), func(tx *stm.Tx) error {
				for i := range accounts {
					accts.Put(tx, i, initial)
				}
				return nil
			})
		}
		s.checkBank(db, q, accts, accounts, initial, acked, cycle)

		// Run transfers; close the Badger (or the queue) under them after a
		// random count.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var n atomic.Int64
		faultAt := int64(50 + r.IntN(300))
		closeQueue := r.IntN(3) == 0
		var sawOutcomeUnknown, sawStopped, sawClosed atomic.Bool
		var once sync.Once
		fault := func() {
			if closeQueue {
				if err := q.Close(); err != nil {
					s.violation("cycle %d: Close racing commits: %v", cycle, err)
				}
				return
			}
			_ = bdb.Close()
		}
		for g := range 4 {
			wg.Go(func() {
				gr := rand.New(rand.NewPCG(s.seed, uint64(cycle*10+g)))
				for i := 0; ; i++ {
					if n.Add(1) == faultAt {
						once.Do(fault)
					}
					id := fmt.Sprintf("%d.%d.%d", cycle, g, i)
					from, to, amt := gr.IntN(accounts), gr.IntN(accounts), int64(1+gr.IntN(20))
					moved := false
					err := db.Run(context.Background(), func(tx *stm.Tx) error {
						a, _ := accts.Get(tx, from)
						b, _ := accts.Get(tx, to)
						if moved = from != to && a >= amt; !moved {
							return nil
						}
						accts.Put(tx, from, a-amt)
						accts.Put(tx, to, b+amt)
						return q.Enqueue(tx, effectqueue.Entry{Kind: "receipt", Payload: fmt.Appendf(nil, "%s %d %d %d", id, from, to, amt)})
					})
					switch {
					case err == nil:
						if moved {
							mu.Lock()
							acked[id] = true
							mu.Unlock()
						}
						atomic.AddUint64(&txs, 1)
					case !closeQueue && errors.Is(err, stm.ErrOutcomeUnknown):
						sawOutcomeUnknown.Store(true)
					case !closeQueue && errors.Is(err, stm.ErrStopped):
						sawStopped.Store(true)
						return
					case closeQueue && (errors.Is(err, effectqueue.ErrClosed) || errors.Is(err, stm.ErrNoLog)):
						sawClosed.Store(true)
						return
					default:
						s.violation("cycle %d: unexpected error: %v", cycle, err)
						return
					}
				}
			})
		}
		wg.Wait()
		faults++
		switch {
		case closeQueue:
			queueCloses++
			if err := db.Err(); err != nil {
				s.violation("cycle %d: closing the queue stopped the DB: %v", cycle, err)
			}
			if !sawClosed.Load() {
				s.violation("cycle %d: no commit was refused after the queue closed", cycle)
			}
			s.logf("cycle %d: queue closed under the transfers", cycle)
			_ = bdb.Close()
		default:
			if err := db.Err(); !errors.Is(err, stm.ErrStopped) {
				s.violation("cycle %d: the DB did not stop after the write failure: %v", cycle, err)
			} else {
				s.logf("cycle %d: stopped: %v", cycle, err)
			}
			if !sawStopped.Load() {
				s.violation("cycle %d: no commit was refused with ErrStopped", cycle)
			}
			_ = q.Close()
		}
	}
	// The fault cleared: reopen, check, and commit once more.
	bdb, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithMemTableSize(16 << 20))
	if err != nil {
		t.Fatal(err)
	}
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Badger: bdb, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	accts, _ := table.NewDurable[int, int64](db, "accounts", nil)
	s.checkBank(db, q, accts, accounts, initial, acked, -1)
	if err := db.Run(context.Background(), func(tx *stm.Tx) error {
		a, _ := accts.Get(tx, 0)
		accts.Put(tx, 0, a)
		return nil
	}); err != nil {
		s.violation("after recovery, a commit failed: %v", err)
	}
	_ = q.Close()
	_ = bdb.Close()
	s.row.Transactions, s.row.Faults, s.row.Entries = txs, faults, uint64(len(acked))
	s.row.Note = fmt.Sprintf("%d of the faults closed the queue, the others its Badger", queueCloses)
}

// checkBank compares the durable balances with the receipts on disk.
func (s *scenario) checkBank(db *stm.DB, q *effectqueue.Queue, accts *table.Table[int, int64], accounts int, initial int64, acked map[string]bool, cycle int) {
	items, err := q.Read(context.Background(), 0, 1<<30)
	if err != nil {
		s.violation("cycle %d: read queue: %v", cycle, err)
		return
	}
	model := map[int]int64{}
	for i := range accounts {
		model[i] = initial
	}
	receipts := map[string]bool{}
	for _, it := range items {
		var id string
		var from, to int
		var amt int64
		if _, err := fmt.Sscanf(string(it.Payload), "%s %d %d %d", &id, &from, &to, &amt); err != nil {
			s.violation("cycle %d: bad receipt %q", cycle, it.Payload)
			continue
		}
		receipts[id] = true
		model[from] -= amt
		model[to] += amt
	}
	got := map[int]int64{}
	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		clear(got)
		accts.Scan(tx, func(k int, v int64) bool { got[k] = v; return true })
		return nil
	})
	var total int64
	for k, v := range got {
		total += v
		if model[k] != v {
			s.violation("cycle %d: account %d is %d on disk, the receipts say %d", cycle, k, v, model[k])
		}
	}
	if total != int64(accounts)*initial {
		s.violation("cycle %d: total %d, want %d", cycle, total, int64(accounts)*initial)
	}
	for id := range acked {
		if !receipts[id] {
			s.violation("cycle %d: acknowledged transfer %s lost", cycle, id)
		}
	}
}
