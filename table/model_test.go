package table_test

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

var seedFlag = flag.Uint64("seed", 0, "seed for the randomized tests (0: pick one and print it)")

func seed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", s, s)
	return s
}

// event is one committed transaction as its body saw it.
type event struct {
	id     int64
	reads  map[int]int64 // key -> id of the writer of the value read
	writes []int         // keys written (always read first)
}

// TestSerializableModel runs random read-modify-write transactions from
// many goroutines, some rolling back, some with savepoints that fail, and
// checks that the committed history is serializable:
//
//   - every value read was written by a committed transaction (or is the
//     initial value), never by a rolled-back or discarded attempt;
//   - no lost update: for each key, the writers form one chain, each writer
//     having read its predecessor's value;
//   - the graph of write-read, write-write and read-write dependencies has
//     no cycle, so a serial order exists;
//   - replaying the committed transactions in that order on a plain map
//     gives the reads each transaction saw, and the table's final state.
func TestSerializableModel(t *testing.T) {
	const keys, goroutines, perG = 12, 8, 400
	s := seed(t)
	db, err := stm.Open(nil)
	require.NoError(t, err)
	tb, err := table.New[int, int64](db, "model")
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		for k := range keys {
			tb.Put(tx, k, 0)
		}
		return nil
	}))

	var mu sync.Mutex
	var history []event
	var unexpected []error
	var wg sync.WaitGroup
	errRollback := errors.New("rollback")
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s, uint64(g)))
			for i := range perG {
				id := int64(g*perG + i + 1)
				nread := 1 + r.IntN(4)
				picks := r.Perm(keys)[:nread]
				nwrite := r.IntN(nread + 1)
				rollback := r.IntN(10) == 0
				failSavepoint := r.IntN(5) == 0
				var ev event
				err := db.Run(ctx, func(tx *stm.Tx) error {
					ev = event{id: id, reads: map[int]int64{}}
					for _, k := range picks {
						v, _ := tb.Get(tx, k)
						ev.reads[k] = v
					}
					for _, k := range picks[:nwrite] {
						tb.Put(tx, k, id)
						ev.writes = append(ev.writes, k)
					}
					if failSavepoint {
						_ = tx.Savepoint(func(tx *stm.Tx) error {
							tb.Put(tx, picks[0], -id) // must never be seen
							return errRollback
						})
					}
					if rollback {
						return errRollback
					}
					return nil
				})
				mu.Lock()
				switch {
				case err == nil:
					history = append(history, ev)
				case !errors.Is(err, errRollback):
					unexpected = append(unexpected, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Empty(t, unexpected)

	final := map[int]int64{}
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		tb.Scan(tx, func(k int, v int64) bool { final[k] = v; return true })
		return nil
	}))
	checkSerializable(t, history, keys, final)
	st := db.Stats()
	t.Logf("%d committed, %d rolled back, %d reruns", st.Commits, st.Rollbacks, st.Reruns)
}

func checkSerializable(t *testing.T, history []event, keys int, final map[int]int64) {
	t.Helper()
	byID := map[int64]*event{0: {id: 0}}
	for i := range history {
		byID[history[i].id] = &history[i]
	}
	// next[k][p] is the writer of k that read p's value of k.
	next := make([]map[int64]int64, keys)
	for k := range next {
		next[k] = map[int64]int64{}
	}
	for _, ev := range history {
		for k, p := range ev.reads {
			if _, ok := byID[p]; !ok {
				t.Fatalf("tx %d read key %d written by %d, which did not commit", ev.id, k, p)
			}
		}
		for _, k := range ev.writes {
			p := ev.reads[k]
			if other, dup := next[k][p]; dup {
				t.Fatalf("lost update on key %d: txs %d and %d both overwrote %d", k, other, ev.id, p)
			}
			next[k][p] = ev.id
		}
	}
	// Dependency graph.
	edges := map[int64][]int64{}
	indeg := map[int64]int{}
	for id := range byID {
		indeg[id] += 0
	}
	add := func(a, b int64) {
		if a != b {
			edges[a] = append(edges[a], b)
			indeg[b]++
		}
	}
	for _, ev := range history {
		for k, p := range ev.reads {
			add(p, ev.id) // wr
			if n, ok := next[k][p]; ok {
				add(ev.id, n) // rw: the overwriter of what we read comes after us
				add(p, n)     // ww
			}
		}
	}
	var order []int64
	queue := []int64{}
	for id, d := range indeg {
		if d == 0 {
			queue = append(queue, id)
		}
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		order = append(order, id)
		for _, n := range edges[id] {
			if indeg[n]--; indeg[n] == 0 {
				queue = append(queue, n)
			}
		}
	}
	require.Len(t, order, len(byID), "dependency cycle: the history is not serializable")
	// Replay.
	model := map[int]int64{}
	for k := range keys {
		model[k] = 0
	}
	for _, id := range order {
		ev := byID[id]
		for k, v := range ev.reads {
			require.Equal(t, model[k], v, "replay: tx %d read key %d", id, k)
		}
		for _, k := range ev.writes {
			model[k] = id
		}
	}
	assert.Equal(t, model, final)
}

// TestNoPhantoms: each transaction counts the table and inserts a record
// holding the count. In any serial order the counts are 0..n-1, each once;
// a scan that missed a concurrent insert would repeat a count.
func TestNoPhantoms(t *testing.T) {
	const goroutines, perG = 8, 100
	db, err := stm.Open(nil)
	require.NoError(t, err)
	tb, err := table.New[int, int](db, "phantoms")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var failed sync.Map
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				err := db.Run(context.Background(), func(tx *stm.Tx) error {
					tb.Put(tx, g*perG+i, tb.Len(tx))
					return nil
				})
				if err != nil {
					failed.Store(g, err)
				}
			}
		})
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("goroutine %v: %v", k, v); return true })
	seen := make([]int, goroutines*perG)
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		assert.Equal(t, goroutines*perG, tb.Len(tx))
		tb.Scan(tx, func(_ int, n int) bool { seen[n]++; return true })
		return nil
	}))
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("count %d was seen by %d transactions", n, c)
		}
	}
}
