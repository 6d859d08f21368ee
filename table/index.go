package table

import (
	"hash/maphash"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/zest-stm/zest/stm"
)

// entry is one key's record. Entries are created on first use of a key and
// never removed: a deleted record stays as an empty cell, so that a
// transaction that saw it absent is validated like any other read.
type entry[K comparable, V any] struct {
	key  K
	hash uint64
	v    stm.Var[V]
}

// slots is an open-addressing hash table with linear probing. Each slot is
// written once, from nil to its entry, so readers probe without locks.
type slots[K comparable, V any] struct {
	mask uint64
	s    []atomic.Pointer[entry[K, V]]
}

// index maps keys to entries. Lookups are lock-free; inserts and growth take
// mu. Growth builds a new table and swaps it in; a reader still probing the old
// one finds every entry that existed before the swap, and an entry inserted
// later belongs to a transaction that had not committed when the reader took
// its snapshot.
type index[K comparable, V any] struct {
	group *stm.Group
	hash  func(K) uint64
	tab   atomic.Pointer[slots[K, V]]

	mu struct {
		sync.Mutex
		n int // entries in tab
	}
}

func newIndex[K comparable, V any](g *stm.Group) *index[K, V] {
	ix := &index[K, V]{group: g, hash: hasher[K]()}
	ix.tab.Store(&slots[K, V]{mask: 63, s: make([]atomic.Pointer[entry[K, V]], 64)})
	return ix
}

func (t *slots[K, V]) find(k K, h uint64) *entry[K, V] {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		e := t.s[i].Load()
		if e == nil {
			return nil
		}
		if e.hash == h && e.key == k {
			return e
		}
	}
}

func (ix *index[K, V]) lookup(k K) *entry[K, V] {
	return ix.tab.Load().find(k, ix.hash(k))
}

// getOrCreate returns k's entry, creating an empty one if there is none.
func (ix *index[K, V]) getOrCreate(k K) (e *entry[K, V], created bool) {
	h := ix.hash(k)
	if e := ix.tab.Load().find(k, h); e != nil {
		return e, false
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	tab := ix.tab.Load()
	if e := tab.find(k, h); e != nil {
		return e, false
	}
	if (ix.mu.n+1)*2 > len(tab.s) {
		tab = ix.growLocked(tab)
	}
	e = &entry[K, V]{key: k, hash: h}
	e.v.Init(ix.group)
	tab.insert(e)
	ix.mu.n++
	return e, true
}

func (t *slots[K, V]) insert(e *entry[K, V]) {
	for i := e.hash & t.mask; ; i = (i + 1) & t.mask {
		if t.s[i].Load() == nil {
			t.s[i].Store(e)
			return
		}
	}
}

// growLocked doubles the table.
// REQUIRES: ix.mu held.
func (ix *index[K, V]) growLocked(old *slots[K, V]) *slots[K, V] {
	n := 2 * len(old.s)
	tab := &slots[K, V]{mask: uint64(n - 1), s: make([]atomic.Pointer[entry[K, V]], n)}
	for i := range old.s {
		if e := old.s[i].Load(); e != nil {
			tab.insert(e)
		}
	}
	ix.tab.Store(tab)
	return tab
}

// each calls fn for every entry until it returns false.
func (ix *index[K, V]) each(fn func(*entry[K, V]) bool) {
	tab := ix.tab.Load()
	for i := range tab.s {
		if e := tab.s[i].Load(); e != nil && !fn(e) {
			return
		}
	}
}

// hasher returns a hash function for K: a fast path for integer and string
// keys, maphash.Comparable for the rest.
func hasher[K comparable]() func(K) uint64 {
	seed := maphash.MakeSeed()
	t := reflect.TypeFor[K]()
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return func(k K) uint64 { return mix(*(*uint64)(unsafe.Pointer(&k))) }
	case reflect.Int32, reflect.Uint32:
		return func(k K) uint64 { return mix(uint64(*(*uint32)(unsafe.Pointer(&k)))) }
	case reflect.Int16, reflect.Uint16:
		return func(k K) uint64 { return mix(uint64(*(*uint16)(unsafe.Pointer(&k)))) }
	case reflect.Int8, reflect.Uint8:
		return func(k K) uint64 { return mix(uint64(*(*uint8)(unsafe.Pointer(&k)))) }
	case reflect.String:
		return func(k K) uint64 { return maphash.String(seed, *(*string)(unsafe.Pointer(&k))) }
	}
	return func(k K) uint64 { return maphash.Comparable(seed, k) }
}

// mix is the splitmix64 finalizer: it spreads integer keys over the table.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
