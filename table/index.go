package table

import (
	"hash/maphash"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/stm"
)

// entry is one key's record. Entries are created when a key is first
// written and dropped again (see index.rebuildLocked) once they are absent:
// a Get of a key with no entry records a read of the key's stripe instead.
//
// The key and the flags come first and the record right after them, so
// that what a lookup reads (the key, a flag, the record's version and
// value) lies in the entry's first 32 bytes. With an 8-byte key an entry is
// 64 bytes, and entries live in arrays whose size class keeps them aligned,
// so a lookup and a read of the value touch one cache line; a string key
// makes a 72-byte entry, and the first 32 bytes of one in two still lie in
// one line (with the record first, the key ended 64 bytes in, and seven
// entries in eight took two lines).
type entry[K comparable, V any] struct {
	key K
	// dropped is set while a rebuild decides whether to drop the entry:
	// a lookup that finds it set waits for the rebuild and looks again.
	dropped atomic.Bool
	// live is set once a dense entry (see dense) holds its key.
	live atomic.Bool
	v    stm.Var[V]
}

// The dense layout. Integer keys are often small and close together (item
// ids, slot numbers, ids handed out in order). For them a hash index costs
// two dependent cache misses per lookup, the slot and then the entry, and
// at a million records each miss is a trip to memory. So an index with
// integer keys also keeps entries in place, in chunks of denseChunk indexed
// by the key: a lookup finds the chunk in a small directory (which stays in
// cache) and reads the entry itself, one miss.
//
// A key goes to the dense layout when it is created, if it is below twice
// the number of entries plus a chunk: keys handed out in order always do,
// sparse keys (random player ids, negative numbers) never do, and the
// chunks' memory stays within a small factor of the entries'. A key created
// in the hash index stays there; a lookup tries the dense layout first,
// then the hash index. Dense entries are never dropped (they live in their
// chunk's memory anyway): a table that once held keys 0..N-1 keeps their
// chunks, and Len and Scan walk them, after the keys are deleted.
const (
	denseShift = 9
	denseChunk = 1 << denseShift
	// denseMax bounds the keys that go dense, and so the directory.
	denseMax = 1 << 30
)

type chunk[K comparable, V any] [denseChunk]entry[K, V]

// denseDir is the directory of dense chunks. It is replaced, never
// changed, when it grows; chunk pointers are set once.
type denseDir[K comparable, V any] struct {
	chunks []atomic.Pointer[chunk[K, V]]
}

// slots is an open-addressing hash table with linear probing. Each slot is
// written once, from nil to its entry, so readers probe without locks. A
// slot keeps its entry's hash beside the pointer (stored before it), so a
// probe that passes other keys' slots reads no entry: at a million records,
// each entry read is a cache miss.
type slots[K comparable, V any] struct {
	mask uint64
	s    []slot[K, V]
}

type slot[K comparable, V any] struct {
	hash atomic.Uint64
	e    atomic.Pointer[entry[K, V]]
}

// index maps keys to entries. Lookups are lock-free; inserts and rebuilds
// take mu. A rebuild builds a new table and swaps it in: a reader still
// probing the old one finds every entry that existed before the swap, and an
// entry inserted later belongs to a transaction that had not committed when
// the reader took its snapshot.
//
// Reclamation. Absent entries (deleted keys, and keys whose insert rolled
// back) would otherwise stay forever, and Len would walk them. A rebuild
// retires every absent, unlocked entry (stmx.Retire: a retired record never
// changes again, and a transaction that read or wrote it reruns) before it
// leaves it out of the new table, so no transaction can go on using a
// record that its table no longer holds. Rebuilds run when the table must
// grow, and after commits that deleted many keys; each costs the table's
// size and comes after at least as many inserts or deletes, so the cost per
// operation is constant.
type index[K comparable, V any] struct {
	group *stm.Group
	keys  keyKind
	seed  maphash.Seed
	tab   atomic.Pointer[slots[K, V]]
	// dense is the dense layout's directory (nil until a key goes dense).
	dense atomic.Pointer[denseDir[K, V]]
	// rebuilding is set while a rebuild runs (under mu).
	rebuilding atomic.Bool
	// deleted counts deletes committed since the last rebuild.
	deleted atomic.Int64

	mu struct {
		sync.Mutex
		n      int           // entries in tab
		nDense int           // live dense entries
		block  []entry[K, V] // entries not yet handed out (see newEntry)
	}
}

const minSlots = 64

func newIndex[K comparable, V any](g *stm.Group) *index[K, V] {
	ix := &index[K, V]{group: g, keys: kindOf[K](), seed: maphash.MakeSeed()}
	ix.tab.Store(&slots[K, V]{mask: minSlots - 1, s: make([]slot[K, V], minSlots)})
	return ix
}

func (t *slots[K, V]) find(k K, h uint64) *entry[K, V] {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.s[i]
		e := s.e.Load()
		if e == nil {
			return nil
		}
		if s.hash.Load() == h && e.key == k {
			return e
		}
	}
}

// lookupDense returns k's entry if it lives in the dense layout.
func (ix *index[K, V]) lookupDense(k K) *entry[K, V] {
	if d := ix.dense.Load(); d != nil {
		if u, ok := ix.denseKey(k); ok && u>>denseShift < uint64(len(d.chunks)) {
			if c := d.chunks[u>>denseShift].Load(); c != nil {
				if e := &c[u&(denseChunk-1)]; e.live.Load() {
					return e
				}
			}
		}
	}
	return nil
}

// lookupHashed looks k up in the hash index.
func (ix *index[K, V]) lookupHashed(k K, h uint64) *entry[K, V] {
	e := ix.tab.Load().find(k, h)
	if e != nil && e.dropped.Load() {
		return ix.lookupSlow(k, h)
	}
	return e
}

// lookupSlow waits for the rebuild under way and looks again.
func (ix *index[K, V]) lookupSlow(k K, h uint64) *entry[K, V] {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.tab.Load().find(k, h)
}

// getOrCreate returns k's entry, creating an empty one if there is none.
func (ix *index[K, V]) getOrCreate(k K) *entry[K, V] {
	if e := ix.lookupDense(k); e != nil {
		return e
	}
	h := ix.hash(k)
	if e := ix.lookupHashed(k, h); e != nil {
		return e
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	// Look again in both layouts: another insert of k may have finished
	// since, and k may have gone dense when it would not any more (the
	// hash index shrinks after deletes).
	if e := ix.lookupDense(k); e != nil {
		return e
	}
	tab := ix.tab.Load()
	if e := tab.find(k, h); e != nil {
		return e
	}
	if u, ok := ix.denseKey(k); ok && u < min(2*uint64(ix.mu.n+ix.mu.nDense+denseChunk), denseMax) {
		e := ix.denseEntryLocked(u)
		if !e.live.Load() {
			e.key = k
			e.v.Init(ix.group)
			e.live.Store(true)
			ix.mu.nDense++
		}
		return e
	}
	if full(ix.mu.n, len(tab.s)) {
		tab = ix.growLocked(tab)
	}
	e := ix.newEntry()
	e.key = k
	e.v.Init(ix.group)
	tab.insert(e, h)
	ix.mu.n++
	return e
}

func (t *slots[K, V]) insert(e *entry[K, V], h uint64) {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		if s := &t.s[i]; s.e.Load() == nil {
			s.hash.Store(h)
			s.e.Store(e)
			return
		}
	}
}

// denseKey returns k as an unsigned integer, for the dense layout, if K is
// an integer type. A negative key reads as a huge one, so it never goes
// dense.
func (ix *index[K, V]) denseKey(k K) (uint64, bool) {
	p := unsafe.Pointer(&k)
	switch ix.keys {
	case keyInt8:
		return *(*uint64)(p), true
	case keyInt4:
		return uint64(*(*uint32)(p)), true
	case keyInt2:
		return uint64(*(*uint16)(p)), true
	case keyInt1:
		return uint64(*(*uint8)(p)), true
	}
	return 0, false
}

// denseEntryLocked returns the in-place entry of dense key u, growing the
// directory and allocating its chunk as needed.
// REQUIRES: ix.mu held, u < denseMax.
func (ix *index[K, V]) denseEntryLocked(u uint64) *entry[K, V] {
	ci := int(u >> denseShift)
	d := ix.dense.Load()
	if d == nil || ci >= len(d.chunks) {
		n := 16
		if d != nil {
			n = 2 * len(d.chunks)
		}
		for n <= ci {
			n *= 2
		}
		nd := &denseDir[K, V]{chunks: make([]atomic.Pointer[chunk[K, V]], n)}
		if d != nil {
			for i := range d.chunks {
				nd.chunks[i].Store(d.chunks[i].Load())
			}
		}
		ix.dense.Store(nd)
		d = nd
	}
	c := d.chunks[ci].Load()
	if c == nil {
		c = new(chunk[K, V])
		d.chunks[ci].Store(c)
	}
	return &c[u&(denseChunk-1)]
}

// full reports whether a table of size slots holding n entries must grow
// before one more goes in: past three quarters. A rebuild leaves it at most
// half full. Probes stay short because a slot holds its entry's hash: a
// probe past other keys reads 16 bytes, four to a cache line.
func full(n, size int) bool { return (n+1)*4 > 3*size }

// entryBlock is how many entries newEntry allocates at once: one
// allocation serves many inserts, and entries inserted together sit
// together in memory. An entry keeps its whole block alive; a block whose
// entries were all reclaimed is freed.
const entryBlock = 32

// newEntry returns a zero entry.
// REQUIRES: ix.mu held.
func (ix *index[K, V]) newEntry() *entry[K, V] {
	if len(ix.mu.block) == 0 {
		ix.mu.block = make([]entry[K, V], entryBlock)
	}
	e := &ix.mu.block[0]
	ix.mu.block = ix.mu.block[1:]
	return e
}

// deletedCommitted records n committed deletes and rebuilds the index if
// dead entries have come to outnumber the live ones. It runs after the
// deleting transaction committed, outside its body.
func (ix *index[K, V]) deletedCommitted(n int) {
	d := ix.deleted.Add(int64(n))
	if d < 32 {
		return
	}
	ix.mu.Lock()
	if d := ix.deleted.Load(); d >= 32 && int(d)*2 >= ix.mu.n && ix.mu.n > 0 {
		ix.rebuildLocked(ix.tab.Load())
	}
	ix.mu.Unlock()
}

// rebuildLocked drops the absent entries of old and swaps in a table sized
// for what is left: at least twice the entries. It runs after deletes
// (deletedCommitted); a table that must grow doubles instead (growLocked).
// It also drops records no commit ever wrote (an insert that rolled back
// leaves one); an insert under way whose record it drops reruns once.
// REQUIRES: ix.mu held.
func (ix *index[K, V]) rebuildLocked(old *slots[K, V]) *slots[K, V] {
	ix.rebuilding.Store(true)
	defer ix.rebuilding.Store(false)
	type keptEntry struct {
		e *entry[K, V]
		h uint64
	}
	kept := make([]keptEntry, 0, ix.mu.n)
	for i := range old.s {
		e := old.s[i].e.Load()
		if e == nil {
			continue
		}
		e.dropped.Store(true)
		if stmx.Retire(&e.v, true) {
			continue
		}
		e.dropped.Store(false)
		kept = append(kept, keptEntry{e, old.s[i].hash.Load()})
	}
	n := minSlots
	for n < 2*(len(kept)+1) {
		n *= 2
	}
	tab := &slots[K, V]{mask: uint64(n - 1), s: make([]slot[K, V], n)}
	for _, k := range kept {
		tab.insert(k.e, k.h)
	}
	ix.mu.n = len(kept)
	ix.deleted.Store(0)
	ix.tab.Store(tab)
	return tab
}

// growLocked swaps in a table twice the size of old holding the same
// entries. It reads only the slots (each keeps its entry's hash), never an
// entry: at a million records each entry read is a cache miss, and a
// growing table would pay several per insert. Absent records stay until a
// rebuild after deletes (deletedCommitted) drops them.
// REQUIRES: ix.mu held.
func (ix *index[K, V]) growLocked(old *slots[K, V]) *slots[K, V] {
	n := 2 * len(old.s)
	tab := &slots[K, V]{mask: uint64(n - 1), s: make([]slot[K, V], n)}
	for i := range old.s {
		if e := old.s[i].e.Load(); e != nil {
			tab.insert(e, old.s[i].hash.Load())
		}
	}
	ix.tab.Store(tab)
	return tab
}

// each calls fn for every entry until it returns false. It waits for a
// rebuild under way before it starts; one that starts later makes the
// transaction rerun when it reads a retired entry.
func (ix *index[K, V]) each(fn func(*entry[K, V]) bool) {
	if ix.rebuilding.Load() {
		ix.mu.Lock()
		ix.mu.Unlock() //nolint:staticcheck // an empty critical section: wait for the rebuild
	}
	tab := ix.tab.Load()
	for i := range tab.s {
		if e := tab.s[i].e.Load(); e != nil && !fn(e) {
			return
		}
	}
	if d := ix.dense.Load(); d != nil {
		for i := range d.chunks {
			c := d.chunks[i].Load()
			if c == nil {
				continue
			}
			for j := range c {
				if e := &c[j]; e.live.Load() && !fn(e) {
					return
				}
			}
		}
	}
}

// size returns the number of slots, for tests and benchmarks.
func (ix *index[K, V]) size() int { return len(ix.tab.Load().s) }

// keyKind says how an index hashes its keys: integers are read at their
// own size (a 4-byte int on a 32-bit platform hashes its 4 bytes only) and
// mixed, strings go through maphash.String, the rest through
// maphash.Comparable. A switch on it costs less than a call through a
// function value, and inlines.
type keyKind uint8

const (
	keyOther keyKind = iota
	keyInt8
	keyInt4
	keyInt2
	keyInt1
	keyString
)

func kindOf[K comparable]() keyKind {
	t := reflect.TypeFor[K]()
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uintptr,
		reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16, reflect.Int8, reflect.Uint8:
		switch t.Size() {
		case 8:
			return keyInt8
		case 4:
			return keyInt4
		case 2:
			return keyInt2
		case 1:
			return keyInt1
		}
	case reflect.String:
		return keyString
	}
	return keyOther
}

// hash returns k's hash.
func (ix *index[K, V]) hash(k K) uint64 {
	p := unsafe.Pointer(&k)
	switch ix.keys {
	case keyInt8:
		return mix(*(*uint64)(p))
	case keyInt4:
		return mix(uint64(*(*uint32)(p)))
	case keyString:
		return maphash.String(ix.seed, *(*string)(p))
	}
	return ix.hashSlow(k)
}

func (ix *index[K, V]) hashSlow(k K) uint64 {
	p := unsafe.Pointer(&k)
	switch ix.keys {
	case keyInt2:
		return mix(uint64(*(*uint16)(p)))
	case keyInt1:
		return mix(uint64(*(*uint8)(p)))
	}
	return maphash.Comparable(ix.seed, k)
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
