package whilecommit

import "github.com/zest-stm/zest/stm"

// State is per-transaction state that a package keeps beside a
// transaction's writes and acts on once the transaction has ended: the
// closure-free form of Do and OnRollback, for a package that registers an
// effect on every call (an index entry, a counter) and would otherwise
// allocate a closure each time.
//
// A State belongs to one attempt of one transaction and is used only by
// the goroutine running it; its methods are never called concurrently.
type State interface {
	// Mark returns a position to which RollbackTo can later return. It is
	// called when a savepoint begins.
	Mark() int
	// RollbackTo undoes what was added since mark, because the savepoint
	// that took it rolled back. A State attached inside that savepoint is
	// rolled back to 0 and stays attached.
	RollbackTo(mark int)
	// End is called once, when the transaction has finally committed
	// (committed is true) or rolled back, at the time hooks run and before
	// them. It is not called for attempts that rerun: their State is
	// dropped. After End the transaction no longer holds the State, so
	// End may recycle it. A panic in End is recovered, logged and counted
	// like a hook's.
	End(committed bool)
}

// Attach returns the State stored under key in tx's current attempt,
// creating it with create on first use. Each attempt starts without
// States. Use a key of an unexported type, or a pointer the package owns,
// so that packages cannot collide; pass a create that captures nothing
// (a plain function) and Attach allocates nothing once the State exists.
func Attach(tx *stm.Tx, key any, create func() State) State {
	h := local(tx)
	for _, a := range h.states {
		if a.key == key {
			return a.s
		}
	}
	s := create()
	h.states = append(h.states, attached{key: key, s: s})
	return s
}
