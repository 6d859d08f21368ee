package stm_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/zest-stm/zest/stm"
)

// The floor: a minimal TL2 (global clock, versioned write locks, pooled
// logs) behind the same closure shape as DB.Run, over the same two cells.
// BenchmarkTransferFloor is the anchor of BenchmarkTransferVars: the ratio
// between them is what Zest's bookkeeping costs on top of the algorithm.
// (bench/ holds the fuller yardstick; this one is for quick profiles.)

type floorCell struct {
	meta atomic.Uint64 // version<<1 | locked
	val  atomic.Int64
}

type floorWrite struct {
	c   *floorCell
	v   int64
	old uint64
}

type floorRead struct {
	c    *floorCell
	meta uint64
}

type floorTx struct {
	rv     uint64
	reads  []floorRead
	writes []floorWrite
}

type floorDB struct {
	clock atomic.Uint64
	pool  sync.Pool
}

type floorAbort struct{}

func (t *floorTx) load(c *floorCell) int64 {
	for i := range t.writes {
		if t.writes[i].c == c {
			return t.writes[i].v
		}
	}
	m1 := c.meta.Load()
	v := c.val.Load()
	if m1&1 != 0 || c.meta.Load() != m1 || m1>>1 > t.rv {
		panic(floorAbort{})
	}
	t.reads = append(t.reads, floorRead{c, m1})
	return v
}

func (t *floorTx) store(c *floorCell, v int64) {
	for i := range t.writes {
		if t.writes[i].c == c {
			t.writes[i].v = v
			return
		}
	}
	t.writes = append(t.writes, floorWrite{c: c, v: v})
}

func (db *floorDB) run(fn func(*floorTx) error) error {
	t, _ := db.pool.Get().(*floorTx)
	if t == nil {
		t = new(floorTx)
	}
	defer db.pool.Put(t)
	for {
		t.rv = db.clock.Load()
		t.reads, t.writes = t.reads[:0], t.writes[:0]
		err, ok := db.attempt(t, fn)
		if !ok {
			continue
		}
		return err
	}
}

func (db *floorDB) attempt(t *floorTx, fn func(*floorTx) error) (err error, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, abort := r.(floorAbort); !abort {
				panic(r)
			}
			ok = false
		}
	}()
	if err := fn(t); err != nil {
		return err, true
	}
	if len(t.writes) == 0 {
		return nil, true
	}
	ws := t.writes
	if len(ws) == 2 && uintptrOf(ws[1].c) < uintptrOf(ws[0].c) {
		ws[0], ws[1] = ws[1], ws[0]
	}
	for i := range ws {
		m := ws[i].c.meta.Load()
		if m&1 != 0 || !ws[i].c.meta.CompareAndSwap(m, m|1) {
			for j := range ws[:i] {
				ws[j].c.meta.Store(ws[j].old)
			}
			return nil, false
		}
		ws[i].old = m
	}
	wv := db.clock.Add(1)
	if wv != t.rv+1 {
		for _, r := range t.reads {
			m := r.c.meta.Load()
			if m&^1 != r.meta || m&1 != 0 && !t.owns(r.c) {
				for j := range ws {
					ws[j].c.meta.Store(ws[j].old)
				}
				return nil, false
			}
		}
	}
	for i := range ws {
		ws[i].c.val.Store(ws[i].v)
		ws[i].c.meta.Store(wv << 1)
	}
	return nil, true
}

func (t *floorTx) owns(c *floorCell) bool {
	for i := range t.writes {
		if t.writes[i].c == c {
			return true
		}
	}
	return false
}

func BenchmarkTransferFloor(b *testing.B) {
	var db floorDB
	cells := make([]floorCell, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x, y := &cells[i&1023], &cells[(i*7+1)&1023]
		if x == y {
			y = &cells[(i*7+2)&1023]
		}
		_ = db.run(func(tx *floorTx) error {
			a, c := tx.load(x), tx.load(y)
			tx.store(x, a-1)
			tx.store(y, c+1)
			return nil
		})
	}
}

func BenchmarkTransferVars(b *testing.B) {
	db, _ := stm.Open(nil)
	vars := make([]*stm.Var[int64], 1024)
	for i := range vars {
		vars[i] = stm.NewVar[int64](nil, 1000)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x, y := vars[i&1023], vars[(i*7+1)&1023]
		if x == y {
			y = vars[(i*7+2)&1023]
		}
		_ = db.Run(ctx, func(tx *stm.Tx) error {
			a, _ := x.Load(tx)
			c, _ := y.Load(tx)
			x.Store(tx, a-1)
			y.Store(tx, c+1)
			return nil
		})
	}
}

func uintptrOf(c *floorCell) uintptr { return uintptr(unsafe.Pointer(c)) }
