package table

import (
	"fmt"
	"reflect"

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
// body it is called from.
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
	ix    *index[K, V]
	clone bool
	// shape is written (blindly) by every insert and delete, and read by
	// Scan and Len, so that a transaction that scanned conflicts with a
	// concurrent insert it could not see (a phantom).
	shape *stm.Var[struct{}]
	dur   *durable[K, V] // nil unless the table is durable
}

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
	return &Table[K, V]{
		name:  name,
		ix:    newIndex[K, V](g),
		clone: clone,
		shape: stm.NewVar(g, struct{}{}),
	}, nil
}

// Name returns the table's name.
func (t *Table[K, V]) Name() string { return t.name }

func (t *Table[K, V]) copyOf(v V) V {
	if t.clone {
		return any(v).(Cloner[V]).Clone()
	}
	return v
}

// Get returns a private copy of k's value and whether k is present.
func (t *Table[K, V]) Get(tx *stm.Tx, k K) (V, bool) {
	e := t.ix.lookup(k)
	if e == nil {
		// Record the absence like any read: a concurrent insert of k must
		// conflict with this transaction.
		e, _ = t.ix.getOrCreate(k)
	}
	v, ok := e.v.Load(tx)
	if ok {
		v = t.copyOf(v)
	}
	return v, ok
}

// Has reports whether k is present.
func (t *Table[K, V]) Has(tx *stm.Tx, k K) bool {
	e, _ := t.ix.getOrCreate(k)
	return e.v.Present(tx)
}

// Put sets k to a copy of v.
func (t *Table[K, V]) Put(tx *stm.Tx, k K, v V) {
	e, _ := t.ix.getOrCreate(k)
	if !e.v.Present(tx) {
		t.shape.Store(tx, struct{}{})
	}
	e.v.Store(tx, t.copyOf(v))
	if t.dur != nil {
		t.record(tx, k, v, false)
	}
}

// Delete removes k and reports whether it was present.
func (t *Table[K, V]) Delete(tx *stm.Tx, k K) bool {
	e := t.ix.lookup(k)
	if e == nil {
		e, _ = t.ix.getOrCreate(k)
	}
	if !e.v.Present(tx) {
		return false
	}
	t.shape.Store(tx, struct{}{})
	e.v.Clear(tx)
	if t.dur != nil {
		var zero V
		t.record(tx, k, zero, true)
	}
	return true
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

// Scan calls fn with each present key and a private copy of its value, in no
// particular order, until fn returns false. It sees the table as of the
// transaction's snapshot: every record inserted by a transaction that
// committed before it, and the transaction's own writes.
func (t *Table[K, V]) Scan(tx *stm.Tx, fn func(k K, v V) bool) {
	t.shape.Load(tx)
	t.ix.each(func(e *entry[K, V]) bool {
		v, ok := e.v.Load(tx)
		if !ok {
			return true
		}
		return fn(e.key, t.copyOf(v))
	})
}

// Len returns the number of present keys. It reads every record, as Scan
// does, so that the count is consistent with the transaction's snapshot.
func (t *Table[K, V]) Len(tx *stm.Tx) int {
	t.shape.Load(tx)
	n := 0
	t.ix.each(func(e *entry[K, V]) bool {
		if e.v.Present(tx) {
			n++
		}
		return true
	})
	return n
}
