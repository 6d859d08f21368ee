package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// The two workloads beside the bank:
//
//   - reads: a read-only transaction of two records out of 1,024, against
//     the same two reads from a map under a sync.RWMutex (the floor for a
//     consistent read of two values);
//   - inserts: blind inserts of distinct keys, one per transaction, from
//     several goroutines, counting reruns per commit (inserts of different
//     keys must not conflict), against inserts into a map under a mutex.

type rate struct {
	name       string
	goroutines int
	opsPerSec  float64
	nsPerOp    float64
	allocs     float64
	reruns     float64
}

// timed runs op from g goroutines for d and measures it. op gets the
// goroutine's number and a counter it owns.
func timed(name string, g int, d time.Duration, op func(g, i int), reruns func() uint64) rate {
	var stop atomic.Bool
	var ops atomic.Uint64
	var wg sync.WaitGroup
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var r0 uint64
	if reruns != nil {
		r0 = reruns()
	}
	start := time.Now()
	for w := range g {
		wg.Go(func() {
			n := 0
			for !stop.Load() {
				op(w, n)
				n++
			}
			ops.Add(uint64(n))
		})
	}
	time.Sleep(d) // the measurement window, not synchronisation
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	runtime.ReadMemStats(&ms1)
	n := float64(ops.Load())
	r := rate{name: name, goroutines: g, opsPerSec: n / el.Seconds(), nsPerOp: float64(el.Nanoseconds()) / n,
		allocs: float64(ms1.Mallocs-ms0.Mallocs) / n}
	if reruns != nil {
		r.reruns = float64(reruns()-r0) / n
	}
	return r
}

func median(rs []rate) rate {
	slices.SortFunc(rs, func(a, b rate) int {
		switch {
		case a.opsPerSec < b.opsPerSec:
			return -1
		case a.opsPerSec > b.opsPerSec:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

// readsWorkload measures read-only transactions of two records.
func readsWorkload(w io.Writer, gors []int, d time.Duration, count int) error {
	db, err := stm.Open(nil)
	if err != nil {
		return err
	}
	tb, err := table.New[int, int64](db, "accounts")
	if err != nil {
		return err
	}
	if err := db.Run(context.Background(), func(tx *stm.Tx) error {
		for i := range 1024 {
			tb.Put(tx, i, initialBalance)
		}
		return nil
	}); err != nil {
		return err
	}
	var mu sync.RWMutex
	m := make(map[int]int64, 1024)
	for i := range 1024 {
		m[i] = initialBalance
	}
	var sink atomic.Int64
	zest := func(g, i int) {
		a, b := (i*7+g)&1023, (i*13+g+1)&1023
		var s int64
		_ = db.Run(context.Background(), func(tx *stm.Tx) error {
			x, _ := tb.Get(tx, a)
			y, _ := tb.Get(tx, b)
			s = x + y
			return nil
		})
		if s != 2*initialBalance {
			sink.Add(1)
		}
	}
	rw := func(g, i int) {
		a, b := (i*7+g)&1023, (i*13+g+1)&1023
		mu.RLock()
		s := m[a] + m[b]
		mu.RUnlock()
		if s != 2*initialBalance {
			sink.Add(1)
		}
	}
	fmt.Fprintf(w, "\nRead-only transaction of 2 records out of 1,024 (GOMAXPROCS=%d, median of %d runs of %s, interleaved):\n\n", runtime.GOMAXPROCS(0), count, d)
	fmt.Fprintln(w, "| goroutines | engine | reads/s (tx/s) | ns/tx | allocs/tx | vs RWMutex map |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|")
	for _, g := range gors {
		var zs, rs []rate
		for range count {
			zs = append(zs, timed("zest", g, d, zest, nil))
			rs = append(rs, timed("rwmutex-map", g, d, rw, nil))
		}
		z, r := median(zs), median(rs)
		fmt.Fprintf(w, "| %d | zest | %.0f | %.0f | %.2f | %.2f× the time |\n", g, z.opsPerSec, z.nsPerOp, z.allocs, r.opsPerSec/z.opsPerSec)
		fmt.Fprintf(w, "| %d | rwmutex-map | %.0f | %.0f | %.2f | 1.00× |\n", g, r.opsPerSec, r.nsPerOp, r.allocs)
	}
	if sink.Load() != 0 {
		return fmt.Errorf("reads: %d inconsistent sums", sink.Load())
	}
	return nil
}

// insertsWorkload measures blind inserts of distinct keys.
func insertsWorkload(w io.Writer, gors []int, d time.Duration, count int) error {
	fmt.Fprintf(w, "\nBlind inserts of distinct keys, one per transaction (GOMAXPROCS=%d, median of %d runs of %s):\n\n", runtime.GOMAXPROCS(0), count, d)
	fmt.Fprintln(w, "| goroutines | engine | inserts/s | ns/insert | allocs/insert | reruns/commit |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|")
	for _, g := range gors {
		var zs, ms []rate
		for range count {
			db, err := stm.Open(nil)
			if err != nil {
				return err
			}
			tb, err := table.New[int, int64](db, "inserts")
			if err != nil {
				return err
			}
			var failed atomic.Int64
			zs = append(zs, timed("zest", g, d, func(w, i int) {
				k := w<<40 | i
				if db.Run(context.Background(), func(tx *stm.Tx) error { tb.Put(tx, k, 1); return nil }) != nil {
					failed.Add(1)
				}
			}, func() uint64 { return db.Stats().Reruns }))
			if failed.Load() != 0 {
				return fmt.Errorf("inserts: %d failed", failed.Load())
			}
			var mu sync.Mutex
			m := map[int]int64{}
			ms = append(ms, timed("mutex-map", g, d, func(w, i int) {
				mu.Lock()
				m[w<<40|i] = 1
				mu.Unlock()
			}, nil))
		}
		for _, r := range []rate{median(zs), median(ms)} {
			fmt.Fprintf(w, "| %d | %s | %.0f | %.0f | %.2f | %.4f |\n", g, r.name, r.opsPerSec, r.nsPerOp, r.allocs, r.reruns)
		}
	}
	return nil
}
