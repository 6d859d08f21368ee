package stm

import (
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The meta word of a cell: version<<3 | retired<<2 | present<<1 | locked.
//
// A writer sets the locked bit with a CompareAndSwap (the version bits stay),
// stores the value while locked, and releases by storing the new version with
// the locked bit clear. A reader loads meta, the value, then meta again: if both
// loads agree and the lock bit is clear, the value belongs to that version.
// Every access is atomic, so the race detector sees no data race.
//
// A retired cell was removed from its table (package table reclaims the
// records of absent keys). It never changes again: a read of it reruns the
// attempt, a commit that wrote it reruns, and the validation of an attempt
// that read it fails, so every transaction finds the key's new record.
const (
	lockedBit  = 1
	presentBit = 2
	retiredBit = 4
	verShift   = 3
)

// cell is the untyped core of a transactional record.
type cell struct {
	meta atomic.Uint64
	// word holds the value of an inline cell (pointer-free, at most 8 bytes).
	word atomic.Uint64
	// ptr holds a pointer to an immutable value for other cells.
	ptr    atomic.Pointer[byte]
	group  *Group
	inline bool
	// The 8 bytes a lock-order id took: with them, a table entry with an
	// 8-byte key stays 64 bytes, one cache line. (Commits lock cells in
	// address order; Go's heap does not move objects.)
	_ [8]byte
}

// Var is a transactional cell holding a value of type T, or nothing.
//
// A Var is safe for concurrent use by transactions; it is read and written
// only through a Tx. The stored value is shared: a T holding slices, maps or
// pointers must not be mutated after Store (package table clones for you).
type Var[T any] struct {
	c cell
}

// NewVar returns a Var in group g (nil for none) holding v.
func NewVar[T any](g *Group, v T) *Var[T] {
	x := new(Var[T])
	x.initWith(g, v)
	return x
}

// Init prepares a zero Var as an empty cell of group g. Call it once, before
// the Var is reachable by any transaction; NewVar calls it for you.
func (x *Var[T]) Init(g *Group) {
	x.c.group = g
	x.c.inline = inlineType[T]()
}

// initWith prepares a zero Var as a cell of group g holding v, as if
// written before any transaction.
func (x *Var[T]) initWith(g *Group, v T) {
	x.Init(g)
	x.c.meta.Store(presentBit)
	x.set(v)
}

// initFrom is initWith for the value at p, for package internal/stmx.
func (x *Var[T]) initFrom(g *Group, p unsafe.Pointer) { x.initWith(g, *(*T)(p)) }

// cellOf gives the untyped cell, for the hooks of package internal/seam.
func (x *Var[T]) cellOf() *cell { return &x.c }

// varCell is implemented by every *Var[T].
type varCell interface {
	cellOf() *cell
	initFrom(g *Group, p unsafe.Pointer)
}

// before reports whether c comes before d in lock order.
func (c *cell) before(d *cell) bool { return uintptr(unsafe.Pointer(c)) < uintptr(unsafe.Pointer(d)) }

// retire marks c retired if it is absent and unlocked, and reports whether
// it did. Package table calls it before it drops a record from its index.
// Unless neverWritten is set, a cell never written by a commit (version 0: a
// record created by an insert that has not committed yet) is kept.
func (c *cell) retire(neverWritten bool) bool {
	m := c.meta.Load()
	if m&(lockedBit|presentBit|retiredBit) != 0 || (!neverWritten && m>>verShift == 0) {
		return false
	}
	return c.meta.CompareAndSwap(m, m|retiredBit)
}

// set stores v directly; only for initialization.
func (x *Var[T]) set(v T) {
	w, p := x.encode(v)
	x.c.word.Store(w)
	x.c.ptr.Store((*byte)(p))
}

func (x *Var[T]) encode(v T) (uint64, unsafe.Pointer) {
	if x.c.inline {
		var w uint64
		*(*T)(unsafe.Pointer(&w)) = v
		return w, nil
	}
	p := new(T)
	*p = v
	return 0, unsafe.Pointer(p)
}

func (x *Var[T]) decode(w uint64, p unsafe.Pointer) T {
	if x.c.inline {
		return *(*T)(unsafe.Pointer(&w))
	}
	if p == nil {
		var zero T
		return zero
	}
	return *(*T)(p)
}

// Load returns the value as tx sees it and whether the cell holds one.
// It panics with ErrTxDone if tx has ended.
func (x *Var[T]) Load(tx *Tx) (T, bool) {
	w, p, ok := tx.live().read(&x.c)
	if !ok {
		var zero T
		return zero, false
	}
	return x.decode(w, p), true
}

// Store sets the value in tx.
func (x *Var[T]) Store(tx *Tx, v T) {
	t := tx.live()
	w, p := x.encode(v)
	t.write(&x.c, w, p, false)
}

// Clear empties the cell in tx.
func (x *Var[T]) Clear(tx *Tx) {
	tx.live().write(&x.c, 0, nil, true)
}

// Present reports whether the cell holds a value in tx. It reads the cell
// like Load, without copying the value.
func (x *Var[T]) Present(tx *Tx) bool {
	return tx.live().present(&x.c)
}

var inlineCache sync.Map // reflect.Type -> bool

// inlineType reports whether T is pointer-free and fits in a word, so that a
// Var[T] can hold it in its atomic word instead of behind a pointer.
func inlineType[T any]() bool {
	// The common kinds without a lookup: a table creates a Var per key.
	switch any((*T)(nil)).(type) {
	case *int, *int8, *int16, *int32, *int64, *uint, *uint8, *uint16, *uint32, *uint64, *uintptr,
		*float32, *float64, *bool, *struct{}:
		return true
	case *string:
		return false
	}
	t := reflect.TypeFor[T]()
	if v, ok := inlineCache.Load(t); ok {
		return v.(bool)
	}
	ok := t.Size() <= 8 && t.Align() <= 8 && !hasRefs(t, true)
	inlineCache.Store(t, ok)
	return ok
}

// hasRefs reports whether values of t contain pointers, slices, maps,
// channels, functions or interfaces: anything through which two copies of a
// value could share memory. Strings are immutable and count only, when
// withStrings is set (a string holds a pointer the garbage collector must
// see).
func hasRefs(t reflect.Type, withStrings bool) bool {
	switch t.Kind() {
	case reflect.String:
		return withStrings
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasRefs(t.Elem(), withStrings)
	case reflect.Struct:
		for i := range t.NumField() {
			if hasRefs(t.Field(i).Type, withStrings) {
				return true
			}
		}
		return false
	default:
		return true
	}
}
