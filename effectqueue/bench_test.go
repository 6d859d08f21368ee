package effectqueue_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// runCommitters runs b.N operations from n goroutines and reports
// operations per second and the p50/p99 latency of one operation.
func runCommitters(b *testing.B, n int, op func(r *rand.Rand) error) {
	var next atomic.Int64
	var failed atomic.Int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), testutil.CPUTime()
	for g := range n {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := op(r); err != nil {
					failed.Add(1)
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), testutil.CPUTime()-cpu0
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d operations failed", failed.Load())
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
}

// BenchmarkCommitEnqueue: each transaction updates one of 1,024 records and
// enqueues one 256-byte entry, from 1, 8 and 64 committers, in Sync and
// Async mode; "naive" is the baseline of one Badger transaction with
// SyncWrites per enqueue, in the same run.
func BenchmarkCommitEnqueue(b *testing.B) {
	payload := make([]byte, 256)
	for _, committers := range []int{1, 8, 64} {
		for _, mode := range []string{"naive", "sync", "async"} {
			b.Run(fmt.Sprintf("mode=%s/committers=%d", mode, committers), func(b *testing.B) {
				dir := b.TempDir()
				if mode == "naive" {
					bdb, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithMemTableSize(16 << 20))
					if err != nil {
						b.Fatal(err)
					}
					defer bdb.Close()
					var seq atomic.Uint64
					runCommitters(b, committers, func(*rand.Rand) error {
						return bdb.Update(func(txn *badger.Txn) error {
							return txn.Set(binary.BigEndian.AppendUint64([]byte("q/"), seq.Add(1)), payload)
						})
					})
					return
				}
				db, err := stm.Open(nil)
				if err != nil {
					b.Fatal(err)
				}
				d := effectqueue.Sync
				if mode == "async" {
					d = effectqueue.Async
				}
				q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Durability: d})
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				recs, _ := table.New[int, int64](db, "records")
				st0 := q.Stats()
				runCommitters(b, committers, func(r *rand.Rand) error {
					k := r.IntN(1024)
					return db.Run(context.Background(), func(tx *stm.Tx) error {
						v, _ := recs.Get(tx, k)
						recs.Put(tx, k, v+1)
						return q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: "bucket/obj", Payload: payload})
					})
				})
				st := q.Stats()
				if w := st.Writes - st0.Writes; w > 0 {
					b.ReportMetric(float64(st.Commits-st0.Commits)/float64(w), "commits/write")
				}
			})
		}
	}
}
