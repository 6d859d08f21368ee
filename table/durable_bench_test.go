package table_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// committers runs b.N operations from n goroutines and reports the rate.
func committers(b *testing.B, n int, op func(r *rand.Rand) error) {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for g := range n {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for next.Add(1) <= int64(b.N) {
				if err := op(r); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tx/s")
	if failed.Load() > 0 {
		b.Fatalf("%d transactions failed", failed.Load())
	}
}

// BenchmarkDurableTransfer: a durable 2-record transfer over 1,024
// accounts from 64 committers, through a durable table (sync mode), and the
// same transfer done directly with Badger transactions (SyncWrites, retried
// on ErrConflict), in the same run.
func BenchmarkDurableTransfer(b *testing.B) {
	const accounts = 1024
	b.Run("engine=badger-txn/committers=64", func(b *testing.B) {
		bdb, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil).WithMemTableSize(16 << 20))
		if err != nil {
			b.Fatal(err)
		}
		defer bdb.Close()
		key := func(i int) []byte { return []byte("acct/" + strconv.Itoa(i)) }
		wb := bdb.NewWriteBatch()
		for i := range accounts {
			_ = wb.Set(key(i), binary.BigEndian.AppendUint64(nil, 1000))
		}
		if err := wb.Flush(); err != nil {
			b.Fatal(err)
		}
		get := func(txn *badger.Txn, i int) (uint64, error) {
			it, err := txn.Get(key(i))
			if err != nil {
				return 0, err
			}
			var v uint64
			err = it.Value(func(x []byte) error { v = binary.BigEndian.Uint64(x); return nil })
			return v, err
		}
		var conflicts atomic.Int64
		committers(b, 64, func(r *rand.Rand) error {
			from, to := r.IntN(accounts), r.IntN(accounts-1)
			if to >= from {
				to++
			}
			for {
				err := bdb.Update(func(txn *badger.Txn) error {
					x, err := get(txn, from)
					if err != nil {
						return err
					}
					y, err := get(txn, to)
					if err != nil {
						return err
					}
					if err := txn.Set(key(from), binary.BigEndian.AppendUint64(nil, x-1)); err != nil {
						return err
					}
					return txn.Set(key(to), binary.BigEndian.AppendUint64(nil, y+1))
				})
				if !errors.Is(err, badger.ErrConflict) {
					return err
				}
				conflicts.Add(1)
			}
		})
		b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/tx")
	})
	b.Run("engine=zest-durable/committers=64", func(b *testing.B) {
		db, q, accts := openDurable[int, int64](b, b.TempDir(), "accounts")
		defer q.Close()
		if err := db.Run(context.Background(), func(tx *stm.Tx) error {
			for i := range accounts {
				accts.Put(tx, i, 1000)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		committers(b, 64, func(r *rand.Rand) error {
			from, to := r.IntN(accounts), r.IntN(accounts-1)
			if to >= from {
				to++
			}
			return db.Run(context.Background(), func(tx *stm.Tx) error {
				x, _ := accts.Get(tx, from)
				y, _ := accts.Get(tx, to)
				accts.Put(tx, from, x-1)
				accts.Put(tx, to, y+1)
				return nil
			})
		})
		b.ReportMetric(float64(db.Stats().Reruns)/float64(b.N), "reruns/tx")
	})
}

// record is a ~200-byte value for the load benchmark.
type record struct {
	Name  string
	Level int64
	Gold  int64
	Bio   string
}

// BenchmarkDurableLoad1M writes 1,000,000 records of about 200 bytes, then
// measures how long NewDurable takes to load them and the heap they use
// (b.N is ignored beyond 1).
func BenchmarkDurableLoad1M(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	db, q, tb := openDurable[int, record](b, dir, "players")
	bio := strings.Repeat("b", 160)
	for i := 0; i < n; i += 2000 {
		err := db.Run(context.Background(), func(tx *stm.Tx) error {
			for j := i; j < min(i+2000, n); j++ {
				tb.Put(tx, j, record{Name: fmt.Sprintf("player%07d", j), Level: int64(j % 90), Gold: int64(j), Bio: bio})
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	db, tb, q = nil, nil, nil
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		db2, err := stm.Open(nil)
		if err != nil {
			b.Fatal(err)
		}
		q2, err := effectqueue.Open(db2, &effectqueue.Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		tb2, err := table.NewDurable[int, record](db2, "players", nil)
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := tb2.Loaded()
		if st.Records != n {
			b.Fatalf("loaded %d records, want %d", st.Records, n)
		}
		b.ReportMetric(elapsed.Seconds(), "load-s")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
		b.ReportMetric(float64(st.Bytes)/(1<<20), "raw-MB")
		runtime.KeepAlive(tb2)
		_ = q2.Close()
	}
}
