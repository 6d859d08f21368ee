// Command bench compares Zest with other ways to run a bank workload in one
// process: 2-record transfers over {8, 1024, 1,000,000} accounts from
// {1, 8, 64} goroutines, for
//
//   - zest: a transfer through package table;
//   - anacrolix/stm v0.5.0, the established Go STM;
//   - one sync.Mutex over a map;
//   - a sync.Mutex per record, taken in key order;
//   - Badger in-memory transactions, retried on ErrConflict.
//
// Every engine runs in the same process and the same run, so ratios are
// meaningful on a noisy machine even when absolute numbers are not. Each
// cell runs -count times for -d each; the median throughput is printed.
//
// ns/tx is wall time per committed transfer (the inverse of throughput),
// allocs/tx counts heap allocations per transfer, and reruns/commit is the
// number of discarded attempts per committed transfer.
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// engine is one way to run the workload.
type engine interface {
	name() string
	setup(accounts int) error
	// transfer moves 1 unit from a to b (a != b).
	transfer(a, b int) error
	// reruns returns the number of discarded attempts so far.
	reruns() uint64
	// total returns the sum of all balances, to check the run.
	total() (int64, error)
	close()
}

const initialBalance = 1_000_000

type result struct {
	engine                    string
	accounts, goroutines      int
	txPerSec, nsPerTx, allocs float64
	rerunsPerCommit           float64
	failed                    uint64
}

func main() {
	var (
		dur       = flag.Duration("d", 300*time.Millisecond, "duration of one measurement")
		count     = flag.Int("count", 3, "measurements per cell; the median is reported")
		accountsF = flag.String("accounts", "8,1024,1000000", "account counts")
		gorsF     = flag.String("goroutines", "1,8,64", "goroutine counts")
		enginesF  = flag.String("engines", "zest,anacrolix-stm,mutex-map,mutex-per-record,badger-inmem", "engines")
		out       = flag.String("o", "", "also write the markdown table to this file")
		workloads = flag.String("workload", "bank,reads,inserts", "workloads: bank, reads (read-only transactions vs a RWMutex map), inserts (blind inserts of distinct keys)")
	)
	flag.Parse()
	wl := map[string]bool{}
	for _, w := range strings.Split(*workloads, ",") {
		wl[w] = true
	}
	accounts, gors := ints(*accountsF), ints(*gorsF)
	names := strings.Split(*enginesF, ",")
	fmt.Printf("GOMAXPROCS=%d, %s per measurement, median of %d\n", runtime.GOMAXPROCS(0), *dur, *count)
	var results []result
	if !wl["bank"] {
		accounts = nil
	}
	for _, n := range accounts {
		for _, name := range names {
			e := newEngine(name)
			if e == nil {
				fmt.Fprintf(os.Stderr, "unknown engine %q\n", name)
				os.Exit(2)
			}
			if err := e.setup(n); err != nil {
				fmt.Fprintf(os.Stderr, "%s setup: %v\n", name, err)
				os.Exit(1)
			}
			for _, g := range gors {
				r := measure(e, n, g, *dur, *count)
				results = append(results, r)
				fmt.Fprintf(os.Stderr, "%-17s accounts=%-8d goroutines=%-3d %12.0f tx/s\n", name, n, g, r.txPerSec)
			}
			if tot, err := e.total(); err != nil || tot != int64(n)*initialBalance {
				fmt.Fprintf(os.Stderr, "%s: total %d (want %d), err %v\n", name, tot, int64(n)*initialBalance, err)
				os.Exit(1)
			}
			e.close()
			runtime.GC()
		}
	}
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	if len(results) > 0 {
		printTable(w, results)
	}
	if wl["reads"] {
		if err := readsWorkload(w, gors, *dur, *count); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if wl["inserts"] {
		if err := insertsWorkload(w, gors, *dur, *count); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func ints(s string) []int {
	var r []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil {
			fmt.Fprintf(os.Stderr, "bad number %q\n", f)
			os.Exit(2)
		}
		r = append(r, n)
	}
	return r
}

func newEngine(name string) engine {
	switch name {
	case "zest":
		return &zestEngine{}
	case "anacrolix-stm":
		return &anacrolixEngine{}
	case "mutex-map":
		return &mutexMap{}
	case "mutex-per-record":
		return &mutexPerRecord{}
	case "badger-inmem":
		return &badgerEngine{}
	}
	return nil
}

// measure runs the workload count times and returns the median run.
func measure(e engine, accounts, goroutines int, d time.Duration, count int) result {
	var runs []result
	for range count {
		runs = append(runs, once(e, accounts, goroutines, d))
	}
	slices.SortFunc(runs, func(a, b result) int {
		switch {
		case a.txPerSec < b.txPerSec:
			return -1
		case a.txPerSec > b.txPerSec:
			return 1
		}
		return 0
	})
	return runs[len(runs)/2]
}

func once(e engine, accounts, goroutines int, d time.Duration) result {
	var stop atomic.Bool
	var ops, failed atomic.Uint64
	var wg sync.WaitGroup
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	reruns0 := e.reruns()
	start := time.Now()
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g)+1, uint64(start.UnixNano())))
			var n uint64
			for !stop.Load() {
				a := r.IntN(accounts)
				b := r.IntN(accounts - 1)
				if b >= a {
					b++
				}
				if err := e.transfer(a, b); err != nil {
					failed.Add(1)
				}
				n++
			}
			ops.Add(n)
		})
	}
	time.Sleep(d) // the measurement window, not synchronisation
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	n := float64(ops.Load())
	return result{
		engine:          e.name(),
		accounts:        accounts,
		goroutines:      goroutines,
		txPerSec:        n / elapsed.Seconds(),
		nsPerTx:         float64(elapsed.Nanoseconds()) / n,
		allocs:          float64(ms1.Mallocs-ms0.Mallocs) / n,
		rerunsPerCommit: float64(e.reruns()-reruns0) / n,
		failed:          failed.Load(),
	}
}

func printTable(w io.Writer, rs []result) {
	anchor := map[[2]int]float64{}
	for _, r := range rs {
		if r.engine == "anacrolix-stm" {
			anchor[[2]int{r.accounts, r.goroutines}] = r.txPerSec
		}
	}
	fmt.Fprintln(w, "| accounts | goroutines | engine | tx/s | ns/tx | allocs/tx | reruns/commit | failed | vs anacrolix/stm |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|---:|---:|")
	slices.SortStableFunc(rs, func(a, b result) int {
		if a.accounts != b.accounts {
			return a.accounts - b.accounts
		}
		return a.goroutines - b.goroutines
	})
	for _, r := range rs {
		ratio := "n/a"
		if a := anchor[[2]int{r.accounts, r.goroutines}]; a > 0 {
			ratio = fmt.Sprintf("%.1f×", r.txPerSec/a)
		}
		fmt.Fprintf(w, "| %d | %d | %s | %.0f | %.0f | %.2f | %.3f | %d | %s |\n",
			r.accounts, r.goroutines, r.engine, r.txPerSec, r.nsPerTx, r.allocs, r.rerunsPerCommit, r.failed, ratio)
	}
}
