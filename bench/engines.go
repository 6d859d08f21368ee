package main

import (
	"context"
	"encoding/binary"
	"errors"
	"expvar"
	"strconv"
	"sync"

	astm "github.com/anacrolix/stm"
	"github.com/dgraph-io/badger/v4"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// engine is one way to run the bank's transfers.
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

func newEngine(name string) engine {
	switch name {
	case "zest":
		return &zestEngine{}
	case "tl2-min":
		return &tl2Engine{}
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

// zestEngine: transfers through a zest table.
type zestEngine struct {
	db       *stm.DB
	accounts *table.Table[int, int64]
	n        int
}

func (z *zestEngine) name() string { return "zest" }

func (z *zestEngine) setup(n int) error {
	db, err := stm.Open(nil)
	if err != nil {
		return err
	}
	t, err := table.New[int, int64](db, "accounts")
	if err != nil {
		return err
	}
	z.db, z.accounts, z.n = db, t, n
	for i := 0; i < n; i += 10_000 {
		err := db.Run(context.Background(), func(tx *stm.Tx) error {
			for j := i; j < min(i+10_000, n); j++ {
				t.Put(tx, j, initialBalance)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (z *zestEngine) transfer(a, b int) error {
	return z.db.Run(context.Background(), func(tx *stm.Tx) error {
		x, _ := z.accounts.Get(tx, a)
		y, _ := z.accounts.Get(tx, b)
		z.accounts.Put(tx, a, x-1)
		z.accounts.Put(tx, b, y+1)
		return nil
	})
}

func (z *zestEngine) reruns() uint64 { return z.db.Stats().Reruns }

func (z *zestEngine) total() (int64, error) {
	return stm.RunValue(context.Background(), z.db, func(tx *stm.Tx) (int64, error) {
		var s int64
		z.accounts.Scan(tx, func(_ int, v int64) bool { s += v; return true })
		return s, nil
	})
}

func (z *zestEngine) close() { z.db.Close() }

// tl2Engine: transfers through the minimal TL2 of tl2.go, one cell per
// account in a slice.
type tl2Engine struct {
	db    *tl2DB
	cells []tl2Cell
}

func (e *tl2Engine) name() string { return "tl2-min" }

func (e *tl2Engine) setup(n int) error {
	e.db = newTL2DB()
	e.cells = make([]tl2Cell, n)
	for i := range e.cells {
		e.db.initCell(&e.cells[i], initialBalance)
	}
	return nil
}

func (e *tl2Engine) transfer(a, b int) error {
	return e.db.Run(context.Background(), func(tx *tl2Tx) error {
		x := tx.Load(&e.cells[a])
		y := tx.Load(&e.cells[b])
		tx.Store(&e.cells[a], x-1)
		tx.Store(&e.cells[b], y+1)
		return nil
	})
}

func (e *tl2Engine) reruns() uint64 { return e.db.reruns.Load() }

func (e *tl2Engine) total() (int64, error) {
	var s int64
	err := e.db.Run(context.Background(), func(tx *tl2Tx) error {
		s = 0
		for i := range e.cells {
			s += tx.Load(&e.cells[i])
		}
		return nil
	})
	return s, err
}

func (e *tl2Engine) close() { e.cells = nil }

// anacrolixEngine: one anacrolix/stm Var per account.
type anacrolixEngine struct {
	vars []*astm.Var[int64]
}

func (e *anacrolixEngine) name() string { return "anacrolix-stm" }

func (e *anacrolixEngine) setup(n int) error {
	e.vars = make([]*astm.Var[int64], n)
	for i := range e.vars {
		e.vars[i] = astm.NewVar[int64](initialBalance)
	}
	return nil
}

func (e *anacrolixEngine) transfer(a, b int) error {
	astm.Atomically(astm.VoidOperation(func(tx *astm.Tx) {
		x := e.vars[a].Get(tx)
		y := e.vars[b].Get(tx)
		e.vars[a].Set(tx, x-1)
		e.vars[b].Set(tx, y+1)
	}))
	return nil
}

// reruns reads anacrolix/stm's own counter of failed commits (it registers
// an expvar map named "stm" at import).
func (e *anacrolixEngine) reruns() uint64 {
	m, _ := expvar.Get("stm").(*expvar.Map)
	if m == nil {
		return 0
	}
	v, _ := m.Get("failed commits").(*expvar.Int)
	if v == nil {
		return 0
	}
	return uint64(v.Value())
}

func (e *anacrolixEngine) total() (int64, error) {
	var s int64
	for _, v := range e.vars {
		s += astm.AtomicGet(v)
	}
	return s, nil
}

func (e *anacrolixEngine) close() { e.vars = nil }

// mutexMap: one mutex over a map.
type mutexMap struct {
	mu sync.Mutex
	m  map[int]int64
}

func (e *mutexMap) name() string { return "mutex-map" }

func (e *mutexMap) setup(n int) error {
	e.m = make(map[int]int64, n)
	for i := range n {
		e.m[i] = initialBalance
	}
	return nil
}

func (e *mutexMap) transfer(a, b int) error {
	e.mu.Lock()
	e.m[a]--
	e.m[b]++
	e.mu.Unlock()
	return nil
}

func (e *mutexMap) reruns() uint64 { return 0 }

func (e *mutexMap) total() (int64, error) {
	var s int64
	for _, v := range e.m {
		s += v
	}
	return s, nil
}

func (e *mutexMap) close() { e.m = nil }

// mutexPerRecord: a mutex per account, locked in index order.
type mutexPerRecord struct {
	accts []struct {
		mu  sync.Mutex
		bal int64
	}
}

func (e *mutexPerRecord) name() string { return "mutex-per-record" }

func (e *mutexPerRecord) setup(n int) error {
	e.accts = make([]struct {
		mu  sync.Mutex
		bal int64
	}, n)
	for i := range e.accts {
		e.accts[i].bal = initialBalance
	}
	return nil
}

func (e *mutexPerRecord) transfer(a, b int) error {
	lo, hi := min(a, b), max(a, b)
	e.accts[lo].mu.Lock()
	e.accts[hi].mu.Lock()
	e.accts[a].bal--
	e.accts[b].bal++
	e.accts[hi].mu.Unlock()
	e.accts[lo].mu.Unlock()
	return nil
}

func (e *mutexPerRecord) reruns() uint64 { return 0 }

func (e *mutexPerRecord) total() (int64, error) {
	var s int64
	for i := range e.accts {
		s += e.accts[i].bal
	}
	return s, nil
}

func (e *mutexPerRecord) close() { e.accts = nil }

// badgerEngine: Badger in-memory, optimistic transactions retried on
// ErrConflict.
type badgerEngine struct {
	db        *badger.DB
	conflicts sync.Mutex
	nconf     uint64
}

func (e *badgerEngine) name() string { return "badger-inmem" }

func key(i int) []byte { return strconv.AppendInt([]byte("acct/"), int64(i), 10) }

func (e *badgerEngine) setup(n int) error {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		return err
	}
	e.db = db
	wb := db.NewWriteBatch()
	for i := range n {
		if err := wb.Set(key(i), binary.BigEndian.AppendUint64(nil, initialBalance)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

func (e *badgerEngine) transfer(a, b int) error {
	for {
		err := e.db.Update(func(txn *badger.Txn) error {
			x, err := e.get(txn, a)
			if err != nil {
				return err
			}
			y, err := e.get(txn, b)
			if err != nil {
				return err
			}
			if err := txn.Set(key(a), binary.BigEndian.AppendUint64(nil, uint64(x-1))); err != nil {
				return err
			}
			return txn.Set(key(b), binary.BigEndian.AppendUint64(nil, uint64(y+1)))
		})
		if errors.Is(err, badger.ErrConflict) {
			e.conflicts.Lock()
			e.nconf++
			e.conflicts.Unlock()
			continue
		}
		return err
	}
}

func (e *badgerEngine) get(txn *badger.Txn, i int) (int64, error) {
	it, err := txn.Get(key(i))
	if err != nil {
		return 0, err
	}
	var v int64
	err = it.Value(func(b []byte) error { v = int64(binary.BigEndian.Uint64(b)); return nil })
	return v, err
}

func (e *badgerEngine) reruns() uint64 {
	e.conflicts.Lock()
	defer e.conflicts.Unlock()
	return e.nconf
}

func (e *badgerEngine) total() (int64, error) {
	var s int64
	err := e.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := it.Item().Value(func(b []byte) error { s += int64(binary.BigEndian.Uint64(b)); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	return s, err
}

func (e *badgerEngine) close() { e.db.Close() }
