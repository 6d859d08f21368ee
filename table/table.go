package table

import (
	"fmt"
	"reflect"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/stm"
)

// Cloner is implemented by value types that hold slices, maps or pointers.
// Clone returns a deep copy: a value that shares no mutable memory with the
// receiver.
type Cloner[V any] interface {
	Clone() V
}

// Table is a transactional map from K to V, registered on a DB by name.
//
// A Table is safe for concurrent use; every method takes the *stm.Tx of the
// body it is called from, and panics with an error wrapping stm.ErrWrongDB
// if that Tx belongs to another DB.
//
// # Value isolation
//
// Values are private copies. Get returns a copy, and Put stores a copy, so
// mutating a value without Put changes nothing shared. For a V made only of
// numbers, booleans, strings, arrays and structs of those, a Go assignment is
// the copy. A V that holds slices, maps, pointers, channels, functions or
// interfaces must implement Cloner[V], and New refuses it otherwise.
type Table[K comparable, V any] struct {
	name  string
	db    *stm.DB
	ix    *index[K, V]
	clone bool
	// stripes guard the key set. An insert or delete of key k writes
	// stripe stripeOf(k); Len and Scan read every stripe, and a Get of a
	// key that has no record reads its stripe. Stripes are read with
	// stmx.Observe, which records the committed version even after the
	// transaction's own insert, so the commit always validates them.
	stripes [numStripes]stm.Var[struct{}]
	// newDeletes is t.makeDeletes, bound once.
	newDeletes func() seam.Local
	dur        *durable[K, V] // nil unless the table is durable
}

// numStripes is the number of key-set stripes of a table. Inserts of
// different keys conflict only when they share a stripe and commit at the
// same moment; a Get of an absent key is invalidated only by an insert of a
// key of its stripe.
const numStripes = 128

// New creates the table called name on db. It fails if the name is taken,
// or if V holds references and does not implement Cloner[V].
func New[K comparable, V any](db *stm.DB, name string) (*Table[K, V], error) {
	vt := reflect.TypeFor[V]()
	clone := stmx.HasPointers(vt)
	if clone && !vt.Implements(reflect.TypeFor[Cloner[V]]()) {
		return nil, fmt.Errorf("table: %q: value type %v holds references (slices, maps, pointers, ...) "+
			"and must implement Clone() %v so that values stay private", name, vt, vt)
	}
	g, err := db.Register(name)
	if err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	t := &Table[K, V]{name: name, db: db, ix: newIndex[K, V](g), clone: clone}
	for i := range t.stripes {
		t.stripes[i].Init(g)
	}
	t.newDeletes = t.makeDeletes
	return t, nil
}

// Name returns the table's name.
func (t *Table[K, V]) Name() string { return t.name }

func (t *Table[K, V]) copyOf(v V) V {
	if t.clone {
		return any(v).(Cloner[V]).Clone()
	}
	return v
}

// check panics if tx belongs to another DB than the table.
func (t *Table[K, V]) check(tx *stm.Tx) {
	if tx.DB() != t.db {
		t.wrongDB()
	}
}

func (t *Table[K, V]) wrongDB() {
	panic(fmt.Errorf("table %q: %w", t.name, stm.ErrWrongDB))
}

func stripeOf(h uint64) int { return int(h >> 57) } // top 7 bits: 0..127

// find returns k's entry as of tx's snapshot, or nil if k has no record,
// in which case the read of k's stripe is recorded.
func (t *Table[K, V]) find(tx *stm.Tx, k K) *entry[K, V] {
	if e := t.ix.lookupDense(k); e != nil {
		return e
	}
	return t.findHashed(tx, k)
}

// findHashed is find for a key that is not in the dense layout.
func (t *Table[K, V]) findHashed(tx *stm.Tx, k K) *entry[K, V] {
	h := t.ix.hash(k)
	if e := t.ix.lookupHashed(k, h); e != nil {
		return e
	}
	// The stripe first, then the index again: an insert of k that the
	// second lookup misses commits after the stripe read, and changes it.
	stmx.Observe(tx, &t.stripes[stripeOf(h)])
	if e := t.ix.lookupDense(k); e != nil {
		return e
	}
	return t.ix.lookupHashed(k, h)
}

// stripe returns the index of k's key-set stripe.
func (t *Table[K, V]) stripe(k K) int { return stripeOf(t.ix.hash(k)) }

// Get returns a private copy of k's value and whether k is present.
func (t *Table[K, V]) Get(tx *stm.Tx, k K) (V, bool) {
	t.check(tx)
	// find, with the dense layout's lookup called from here: one call
	// fewer for the common small integer key.
	e := t.ix.lookupDense(k)
	if e == nil {
		if e = t.findHashed(tx, k); e == nil {
			var zero V
			return zero, false
		}
	}
	v, ok := e.v.Load(tx)
	if ok {
		v = t.copyOf(v)
	}
	return v, ok
}

// Has reports whether k is present.
func (t *Table[K, V]) Has(tx *stm.Tx, k K) bool {
	t.check(tx)
	e := t.find(tx, k)
	return e != nil && e.v.Present(tx)
}

// Put sets k to a copy of v.
func (t *Table[K, V]) Put(tx *stm.Tx, k K, v V) {
	t.check(tx)
	e := t.ix.getOrCreate(k)
	if !e.v.Present(tx) {
		t.stripes[t.stripe(k)].Store(tx, struct{}{})
	}
	e.v.Store(tx, t.copyOf(v))
	if t.dur != nil {
		t.record(tx, k, v, false)
	}
}

// Delete removes k and reports whether it was present.
func (t *Table[K, V]) Delete(tx *stm.Tx, k K) bool {
	t.check(tx)
	e := t.find(tx, k)
	if e == nil || !e.v.Present(tx) {
		return false
	}
	t.stripes[t.stripe(k)].Store(tx, struct{}{})
	e.v.Clear(tx)
	if t.dur != nil {
		var zero V
		t.record(tx, k, zero, true)
	}
	stmx.Local(tx, &t.ix.deleted, t.newDeletes).(*deletes[K, V]).n++
	return true
}

// makeDeletes is the create function of a transaction's deletes: a method
// value made once in New, so that a Delete allocates no closure.
func (t *Table[K, V]) makeDeletes() seam.Local { return &deletes[K, V]{ix: t.ix} }

// deletes counts a transaction's deletes from one table, so that the
// index reclaims their records once they are committed.
type deletes[K comparable, V any] struct {
	ix *index[K, V]
	n  int
}

func (d *deletes[K, V]) Mark() int           { return d.n }
func (d *deletes[K, V]) RollbackTo(mark int) { d.n = mark }
func (d *deletes[K, V]) End(committed bool) {
	if committed && d.n > 0 {
		d.ix.deletedCommitted(d.n)
	}
}

// Update reads k, calls fn with a private copy of its value (the zero value
// and false if absent), and stores what fn returns; if fn returns keep ==
// false, k is deleted instead.
func (t *Table[K, V]) Update(tx *stm.Tx, k K, fn func(v V, found bool) (nv V, keep bool)) {
	v, found := t.Get(tx, k)
	nv, keep := fn(v, found)
	switch {
	case keep:
		t.Put(tx, k, nv)
	case found:
		t.Delete(tx, k)
	}
}

// readKeySet records reads of every stripe: the transaction then conflicts
// with any insert or delete it did not see, even after its own writes.
func (t *Table[K, V]) readKeySet(tx *stm.Tx) {
	for i := range t.stripes {
		stmx.Observe(tx, &t.stripes[i])
	}
}

// Scan calls fn with each present key and a private copy of its value, in no
// particular order, until fn returns false. It sees the table as of the
// transaction's snapshot: every record inserted by a transaction that
// committed before it, and the transaction's own writes. A transaction that
// scanned conflicts with any other transaction's insert or delete.
func (t *Table[K, V]) Scan(tx *stm.Tx, fn func(k K, v V) bool) {
	t.check(tx)
	t.readKeySet(tx)
	t.ix.each(func(e *entry[K, V]) bool {
		v, ok := e.v.Load(tx)
		if !ok {
			return true
		}
		return fn(e.key, t.copyOf(v))
	})
}

// Len returns the number of present keys. It reads every record, as Scan
// does, so that the count is consistent with the transaction's snapshot, and
// it conflicts with any other transaction's insert or delete.
func (t *Table[K, V]) Len(tx *stm.Tx) int {
	t.check(tx)
	t.readKeySet(tx)
	n := 0
	t.ix.each(func(e *entry[K, V]) bool {
		if e.v.Present(tx) {
			n++
		}
		return true
	})
	return n
}
