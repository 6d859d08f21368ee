package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// errInconsistent is what a read-only op returns when its two reads did not
// come from one state.
var errInconsistent = errors.New("bench: inconsistent read")

// bankContenders sets up the named bank engines over n accounts. The
// returned function closes them.
func bankContenders(names []string, n int) ([]*contender, func(), error) {
	var cs []*contender
	var es []engine
	done := func() {
		for _, e := range es {
			e.close()
		}
		runtime.GC()
	}
	for _, name := range names {
		e := newEngine(name)
		if e == nil {
			continue // not a bank engine (rwmutex-map)
		}
		if err := e.setup(n); err != nil {
			done()
			return nil, nil, fmt.Errorf("%s setup: %w", name, err)
		}
		es = append(es, e)
		cs = append(cs, &contender{
			name: name,
			op: func(w *worker) error {
				a, b := w.pair(n)
				return e.transfer(a, b)
			},
			reruns: e.reruns,
			check: func() error {
				if tot, err := e.total(); err != nil || tot != int64(n)*initialBalance {
					return fmt.Errorf("total %d (want %d), err %v", tot, int64(n)*initialBalance, err)
				}
				return nil
			},
		})
	}
	return cs, done, nil
}

// transferWorkload: the 2-record transfer over 1,024 records, with the
// issue's two targets.
func transferWorkload(c *config) error {
	const n = 1024
	cs, done, err := bankContenders(c.pick([]string{"zest", "tl2-min", "anacrolix-stm", "mutex-per-record"}), n)
	if err != nil {
		return err
	}
	defer done()
	anchors := []string{"tl2-min", "anacrolix-stm"}
	targets := []target{
		{engine: "zest", anchor: "anacrolix-stm", maxRatio: 1.0 / 20, text: "≥ 20× anacrolix/stm's throughput at GOMAXPROCS=2"},
		{engine: "zest", anchor: "tl2-min", maxRatio: 3, text: "≤ 3× tl2-min's time"},
		{engine: "zest", noAllocs: true, text: "no per-Run heap allocation in steady state"},
	}
	header(c, "Transfer of 2 records out of 1,024")
	return byGoroutines(c, "transfer", cs, c.goroutines([]int{1}), anchors, targets)
}

// byGoroutines measures cs at each goroutine count, prints one table of
// transactions with a row per engine and count, then each count's targets,
// and fails if an engine failed.
func byGoroutines(c *config, label string, cs []*contender, gors []int, anchors []string, targets []target) error {
	var rows []row
	var all [][]summary
	for _, g := range gors {
		ss, err := measureRounds(label, cs, g, c.d, c.count, anchors)
		if err != nil {
			return err
		}
		all = append(all, ss)
		for _, s := range ss {
			rows = append(rows, row{keys: []string{fmt.Sprint(g)}, s: s})
		}
	}
	printTable(c.w, []string{"goroutines"}, "tx", anchors, rows)
	fmt.Fprintln(c.w)
	for i, g := range gors {
		printTargets(c.w, fmt.Sprintf("goroutines=%d: ", g), targets, all[i])
		if err := failedErr(label, all[i]); err != nil {
			return err
		}
	}
	return nil
}

// bankWorkload: every bank engine over each account count.
func bankWorkload(c *config) error {
	names := c.pick([]string{"zest", "tl2-min", "anacrolix-stm", "mutex-map", "mutex-per-record", "badger-inmem"})
	anchors := []string{"anacrolix-stm", "tl2-min"}
	header(c, "Bank: 2-record transfers, every engine")
	var rows []row
	var failed error
	for _, n := range c.accounts {
		if n < 2 {
			return fmt.Errorf("bank: %d accounts: need at least 2", n)
		}
		cs, done, err := bankContenders(names, n)
		if err != nil {
			return err
		}
		for _, g := range c.goroutines([]int{1, 8, 64}) {
			ss, err := measureRounds(fmt.Sprintf("bank accounts=%d", n), cs, g, c.d, c.count, anchors)
			if err != nil {
				done()
				return err
			}
			for _, s := range ss {
				rows = append(rows, row{keys: []string{fmt.Sprint(n), fmt.Sprint(g)}, s: s})
			}
			if err := failedErr("bank", ss); err != nil && failed == nil {
				failed = err
			}
		}
		done()
	}
	printTable(c.w, []string{"accounts", "goroutines"}, "tx", anchors, rows)
	return failed
}

// readsWorkload: a read-only transaction of two records out of 1,024,
// against the same two reads from a map under a sync.RWMutex (the floor for
// a consistent read of two values).
func readsWorkload(c *config) error {
	const n = 1024
	var cs []*contender
	var closers []func()
	defer func() {
		for _, f := range closers {
			f()
		}
	}()
	for _, name := range c.pick([]string{"zest", "tl2-min", "rwmutex-map"}) {
		switch name {
		case "zest":
			db, err := stm.Open(nil)
			if err != nil {
				return err
			}
			closers = append(closers, func() { db.Close() })
			tb, err := table.New[int, int64](db, "accounts")
			if err != nil {
				return err
			}
			if err := db.Run(context.Background(), func(tx *stm.Tx) error {
				for i := range n {
					tb.Put(tx, i, initialBalance)
				}
				return nil
			}); err != nil {
				return err
			}
			cs = append(cs, &contender{
				name: name,
				op: func(w *worker) error {
					a, b := w.pair(n)
					var s int64
					if err := db.Run(context.Background(), func(tx *stm.Tx) error {
						x, _ := tb.Get(tx, a)
						y, _ := tb.Get(tx, b)
						s = x + y
						return nil
					}); err != nil {
						return err
					}
					if s != 2*initialBalance {
						return errInconsistent
					}
					return nil
				},
				reruns: func() uint64 { return db.Stats().Reruns },
			})
		case "tl2-min":
			db := newTL2DB()
			cells := make([]tl2Cell, n)
			for i := range cells {
				db.initCell(&cells[i], initialBalance)
			}
			cs = append(cs, &contender{
				name: name,
				op: func(w *worker) error {
					a, b := w.pair(n)
					var s int64
					if err := db.Run(context.Background(), func(tx *tl2Tx) error {
						s = tx.Load(&cells[a]) + tx.Load(&cells[b])
						return nil
					}); err != nil {
						return err
					}
					if s != 2*initialBalance {
						return errInconsistent
					}
					return nil
				},
				reruns: db.reruns.Load,
			})
		case "rwmutex-map":
			var mu sync.RWMutex
			m := make(map[int]int64, n)
			for i := range n {
				m[i] = initialBalance
			}
			cs = append(cs, &contender{
				name: name,
				op: func(w *worker) error {
					a, b := w.pair(n)
					mu.RLock()
					s := m[a] + m[b]
					mu.RUnlock()
					if s != 2*initialBalance {
						return errInconsistent
					}
					return nil
				},
			})
		}
	}
	anchors := []string{"rwmutex-map"}
	targets := []target{
		{engine: "zest", anchor: "rwmutex-map", maxRatio: 2, text: "≤ 2× the RWMutex map's time"},
		{engine: "zest", noAllocs: true, text: "0 allocs"},
	}
	header(c, "Read-only transaction of 2 records out of 1,024")
	return byGoroutines(c, "reads", cs, c.goroutines([]int{1, 8}), anchors, targets)
}

// insertsWorkload: blind inserts of distinct keys, one per transaction, from
// several goroutines (inserts of different keys must not conflict: see
// reruns/commit), against inserts into a map under a mutex. Every window
// starts from an empty table.
func insertsWorkload(c *config) error {
	var cs []*contender
	var db *stm.DB
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	for _, name := range c.pick([]string{"zest", "mutex-map"}) {
		switch name {
		case "zest":
			var tb *table.Table[int, int64]
			cs = append(cs, &contender{
				name: name,
				prepare: func() error {
					if db != nil {
						db.Close()
					}
					var err error
					if db, err = stm.Open(nil); err != nil {
						return err
					}
					tb, err = table.New[int, int64](db, "inserts")
					return err
				},
				op: func(w *worker) error {
					k := w.id<<40 | w.n
					return db.Run(context.Background(), func(tx *stm.Tx) error { tb.Put(tx, k, 1); return nil })
				},
				reruns: func() uint64 { return db.Stats().Reruns },
			})
		case "mutex-map":
			var mu sync.Mutex
			var m map[int]int64
			cs = append(cs, &contender{
				name:    name,
				prepare: func() error { m = map[int]int64{}; return nil },
				op: func(w *worker) error {
					mu.Lock()
					m[w.id<<40|w.n] = 1
					mu.Unlock()
					return nil
				},
			})
		}
	}
	anchors := []string{"mutex-map"}
	header(c, "Blind inserts of distinct keys, one per transaction, into an empty table")
	var rows []row
	for _, g := range c.goroutines([]int{1, 8, 64}) {
		ss, err := measureRounds("inserts", cs, g, c.d, c.count, anchors)
		if err != nil {
			return err
		}
		if err := failedErr("inserts", ss); err != nil {
			return err
		}
		for _, s := range ss {
			rows = append(rows, row{keys: []string{fmt.Sprint(g)}, s: s})
		}
	}
	printTable(c.w, []string{"goroutines"}, "insert", anchors, rows)
	return nil
}
