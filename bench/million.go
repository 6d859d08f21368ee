package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// The million workload: transfers between two random records out of
// -records (1,000,000), so that nearly every record access misses the
// cache, with three key shapes:
//
//   - dense: int64 keys 0..N-1. Anchor: a sync.Mutex per record in a slice
//     indexed by the key, locked in key order.
//   - sparse: random 63-bit int64 keys, like player ids (sparseID: a
//     bijection of the record number, so distinct). Anchor: a sync.Mutex per
//     record found through a Go map[int64]*record, locked in key order.
//   - string: "player:" and the sparse id in 16 hex digits (23 bytes).
//     Anchor: the same through a Go map[string]*record.
//
// zest uses table.New[int64, int64] or table.New[string, int64] as a user
// would, tl2-min a slice (dense) or the same Go map to find its cells.
//
// Every engine computes its two keys per transaction from the two record
// numbers, so the key is hot in the cache as a key from a just-parsed request
// would be, and no engine pays a cache miss to fetch it. A string key is
// written into a per-goroutine buffer and passed without allocating
// (worker.strKey); the table's records keep their own copies from the
// setup, and the check after the rounds verifies that no key was added.

// strKeyLen is the length of a string key: "player:" + 16 hex digits.
const strKeyLen = 7 + 16

// sparseID maps record number i to a distinct, random-looking, non-negative
// int64: an offset, multiplications by odd constants and xor-shifts, each a
// bijection on 63-bit numbers.
func sparseID(i int) int64 {
	const mask = 1<<63 - 1
	x := (uint64(i) + 0x2545f4914f6cdd1d) & mask
	x = (x ^ x>>31) * 0x7fb5d329728ea185 & mask
	x = (x ^ x>>27) * 0x81dadef4bc2dd44d & mask
	x ^= x >> 33
	return int64(x)
}

// strKeyOf returns the string key of id, allocated (for the setup).
func strKeyOf(id int64) string {
	var b [strKeyLen]byte
	putStrKey(&b, id)
	return string(b[:])
}

func putStrKey(b *[strKeyLen]byte, id int64) {
	const hex = "0123456789abcdef"
	copy(b[:], "player:")
	for i := range 16 {
		b[strKeyLen-1-i] = hex[(id>>(4*i))&15]
	}
}

// strKey writes id's key into buffer slot and returns it as a string that
// shares the buffer: valid until the worker's next strKey on that slot. The
// engines only look keys up (a transfer never inserts), so none keeps it.
func (w *worker) strKey(slot int, id int64) string {
	putStrKey(&w.keys[slot], id)
	return unsafe.String(&w.keys[slot][0], strKeyLen)
}

// keyShape is how a record number becomes a key.
type keyShape[K cmp.Ordered] struct {
	name string
	// dense: K is int64 and record i's key is i, so the anchor and tl2-min
	// index a slice with it (and skip the call to key, which can only make
	// them faster than zest, never slower).
	dense bool
	// key returns record i's key, in buffer slot (0 or 1) for string keys.
	key func(w *worker, slot, i int) K
	// owned returns record i's key, allocated (for the setup).
	owned func(i int) K
}

var (
	denseKeys = keyShape[int64]{name: "dense", dense: true,
		key:   func(_ *worker, _, i int) int64 { return int64(i) },
		owned: func(i int) int64 { return int64(i) }}
	sparseKeys = keyShape[int64]{name: "sparse",
		key:   func(_ *worker, _, i int) int64 { return sparseID(i) },
		owned: sparseID}
	stringKeys = keyShape[string]{name: "string",
		key:   func(w *worker, slot, i int) string { return w.strKey(slot, sparseID(i)) },
		owned: func(i int) string { return strKeyOf(sparseID(i)) }}
)

// record is the anchor's record: a balance under its own mutex.
type record struct {
	mu  sync.Mutex
	bal int64
}

// millionContenders sets up the named engines over n records keyed by
// shape. The returned function releases them.
func millionContenders[K cmp.Ordered](shape keyShape[K], n int, names []string) ([]*contender, func(), error) {
	var cs []*contender
	var closers []func()
	done := func() {
		for _, f := range closers {
			f()
		}
		runtime.GC()
	}
	ctx := context.Background()
	for _, name := range names {
		switch name {
		case "zest":
			db, err := stm.Open(nil)
			if err != nil {
				done()
				return nil, nil, err
			}
			closers = append(closers, func() { db.Close() })
			tb, err := table.New[K, int64](db, "accounts")
			if err != nil {
				done()
				return nil, nil, err
			}
			for lo := 0; lo < n; lo += 10_000 {
				if err := db.Run(ctx, func(tx *stm.Tx) error {
					for i := lo; i < min(lo+10_000, n); i++ {
						tb.Put(tx, shape.owned(i), initialBalance)
					}
					return nil
				}); err != nil {
					done()
					return nil, nil, err
				}
			}
			cs = append(cs, &contender{
				name: name,
				op: func(w *worker) error {
					i, j := w.pair(n)
					a, b := shape.key(w, 0, i), shape.key(w, 1, j)
					return db.Run(ctx, func(tx *stm.Tx) error {
						x, _ := tb.Get(tx, a)
						y, _ := tb.Get(tx, b)
						tb.Put(tx, a, x-1)
						tb.Put(tx, b, y+1)
						return nil
					})
				},
				reruns: func() uint64 { return db.Stats().Reruns },
				check: func() error {
					var sum int64
					var l int
					err := db.Run(ctx, func(tx *stm.Tx) error {
						sum, l = 0, tb.Len(tx)
						tb.Scan(tx, func(_ K, v int64) bool { sum += v; return true })
						return nil
					})
					return checkTotal(sum, l, n, err)
				},
			})
		case "tl2-min":
			c, release := tl2Million(shape, n)
			closers = append(closers, release)
			cs = append(cs, c)
		case "mutex-per-record":
			c, release := mutexMillion(shape, n)
			closers = append(closers, release)
			cs = append(cs, c)
		}
	}
	return cs, done, nil
}

// tl2Million is tl2-min over n cells: in a slice indexed by the key for
// dense keys, else found through a Go map.
func tl2Million[K cmp.Ordered](shape keyShape[K], n int) (*contender, func()) {
	ctx := context.Background()
	db := newTL2DB()
	c := &contender{name: "tl2-min", reruns: db.reruns.Load}
	if shape.dense {
		cells := make([]tl2Cell, n)
		for i := range cells {
			db.initCell(&cells[i], initialBalance)
		}
		c.op = func(w *worker) error {
			i, j := w.pair(n)
			a, b := int64(i), int64(j) // the dense key is the record number
			return db.Run(ctx, func(tx *tl2Tx) error {
				ca, cb := &cells[a], &cells[b]
				x := tx.Load(ca)
				y := tx.Load(cb)
				tx.Store(ca, x-1)
				tx.Store(cb, y+1)
				return nil
			})
		}
		c.check = func() error {
			var sum int64
			err := db.Run(ctx, func(tx *tl2Tx) error {
				sum = 0
				for i := range cells {
					sum += tx.Load(&cells[i])
				}
				return nil
			})
			return checkTotal(sum, len(cells), n, err)
		}
		return c, func() { cells = nil }
	}
	m := make(map[K]*tl2Cell, n)
	for i := range n {
		m[shape.owned(i)] = db.newCell(initialBalance)
	}
	c.op = func(w *worker) error {
		i, j := w.pair(n)
		a, b := shape.key(w, 0, i), shape.key(w, 1, j)
		return db.Run(ctx, func(tx *tl2Tx) error {
			ca, cb := m[a], m[b]
			x := tx.Load(ca)
			y := tx.Load(cb)
			tx.Store(ca, x-1)
			tx.Store(cb, y+1)
			return nil
		})
	}
	c.check = func() error {
		var sum int64
		err := db.Run(ctx, func(tx *tl2Tx) error {
			sum = 0
			for i := range n {
				sum += tx.Load(m[shape.owned(i)])
			}
			return nil
		})
		return checkTotal(sum, len(m), n, err)
	}
	return c, func() { m = nil }
}

// mutexMillion is the anchor: a mutex per record, locked in key order, in a
// slice indexed by the key for dense keys, else found through a Go map.
func mutexMillion[K cmp.Ordered](shape keyShape[K], n int) (*contender, func()) {
	c := &contender{name: "mutex-per-record"}
	if shape.dense {
		recs := make([]record, n)
		for i := range recs {
			recs[i].bal = initialBalance
		}
		c.op = func(w *worker) error {
			i, j := w.pair(n)
			a, b := int64(i), int64(j) // the dense key is the record number
			lo, hi := min(a, b), max(a, b)
			recs[lo].mu.Lock()
			recs[hi].mu.Lock()
			recs[a].bal--
			recs[b].bal++
			recs[hi].mu.Unlock()
			recs[lo].mu.Unlock()
			return nil
		}
		c.check = func() error {
			var sum int64
			for i := range recs {
				sum += recs[i].bal
			}
			return checkTotal(sum, len(recs), n, nil)
		}
		return c, func() { recs = nil }
	}
	m := make(map[K]*record, n)
	for i := range n {
		m[shape.owned(i)] = &record{bal: initialBalance}
	}
	c.op = func(w *worker) error {
		i, j := w.pair(n)
		a, b := shape.key(w, 0, i), shape.key(w, 1, j)
		ra, rb := m[a], m[b]
		lo, hi := ra, rb
		if b < a {
			lo, hi = rb, ra
		}
		lo.mu.Lock()
		hi.mu.Lock()
		ra.bal--
		rb.bal++
		hi.mu.Unlock()
		lo.mu.Unlock()
		return nil
	}
	c.check = func() error {
		var sum int64
		for i := range n {
			sum += m[shape.owned(i)].bal
		}
		return checkTotal(sum, len(m), n, nil)
	}
	return c, func() { m = nil }
}

func checkTotal(sum int64, l, n int, err error) error {
	if err != nil {
		return err
	}
	if l != n || sum != int64(n)*initialBalance {
		return fmt.Errorf("%d records holding %d (want %d holding %d)", l, sum, n, int64(n)*initialBalance)
	}
	return nil
}

// millionWorkload measures every selected shape from each goroutine count.
func millionWorkload(c *config) error {
	names := c.pick([]string{"zest", "tl2-min", "mutex-per-record"})
	anchors := []string{"mutex-per-record"}
	header(c, fmt.Sprintf("Transfer of 2 records out of %d, by key shape", c.records))
	fmt.Fprintln(c.w, "Anchor mutex-per-record: a sync.Mutex per record, locked in key order, in a slice indexed by the key (dense) or found through a Go map[int64]*record (sparse) or map[string]*record (string).")
	fmt.Fprintln(c.w)
	var rows []row
	type result struct {
		shape string
		g     int
		ss    []summary
	}
	var results []result
	for _, shape := range c.shapes {
		t0 := time.Now()
		var (
			cs   []*contender
			done func()
			err  error
		)
		switch shape {
		case "dense":
			cs, done, err = millionContenders(denseKeys, c.records, names)
		case "sparse":
			cs, done, err = millionContenders(sparseKeys, c.records, names)
		case "string":
			cs, done, err = millionContenders(stringKeys, c.records, names)
		}
		if err != nil {
			return fmt.Errorf("million %s: %w", shape, err)
		}
		fmt.Fprintf(os.Stderr, "million %s: set up %d records in %s\n", shape, c.records, time.Since(t0).Round(time.Millisecond))
		for _, g := range c.goroutines([]int{1, 8}) {
			ss, err := measureRounds("million "+shape, cs, g, c.d, c.count, anchors)
			if err != nil {
				done()
				return err
			}
			results = append(results, result{shape, g, ss})
			for _, s := range ss {
				rows = append(rows, row{keys: []string{shape, fmt.Sprint(g)}, s: s})
			}
		}
		done()
	}
	printTable(c.w, []string{"keys", "goroutines"}, "tx", anchors, rows)
	fmt.Fprintln(c.w)
	for _, r := range results {
		t := target{engine: "zest", anchor: "mutex-per-record", maxRatio: 1.5, text: "≤ 1.5× a per-record mutex found through a Go map"}
		if r.shape == "dense" {
			t = target{engine: "zest", anchor: "mutex-per-record", maxRatio: 2.5, text: "≤ 2.5× the slice-indexed per-record mutex"}
		}
		printTargets(c.w, fmt.Sprintf("%s keys, goroutines=%d: ", r.shape, r.g), []target{t,
			{engine: "zest", noAllocs: true, text: "no per-Run heap allocation in steady state"}}, r.ss)
		if err := failedErr("million "+r.shape, r.ss); err != nil {
			return err
		}
	}
	return nil
}
