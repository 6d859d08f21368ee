package saga

import (
	"fmt"
	"sync"
)

// Memo remembers the results of calls made inside the body of one
// stm.DB.Run, so that the reruns of the body do not call again (the other
// Zeze rule: a remote call may run inside a body only if it has no side
// effect and is safe to repeat, such as reading a price; see the package
// documentation).
//
// Create one Memo per Run, outside the body, and call Remember in the body.
// A Memo is safe for concurrent use; the zero value is ready.
type Memo struct {
	mu   sync.Mutex // protects vals
	vals map[string]any
}

// Remember returns the result remembered under key, or calls fn and
// remembers its result if it succeeds. An error is not remembered: the next
// rerun calls fn again. A result of another type under the same key is an
// error.
func Remember[T any](m *Memo, key string, fn func() (T, error)) (T, error) {
	m.mu.Lock()
	v, ok := m.vals[key]
	m.mu.Unlock()
	if ok {
		t, ok := v.(T)
		if !ok {
			var zero T
			return zero, fmt.Errorf("saga: Memo key %q holds a %T, not a %T", key, v, zero)
		}
		return t, nil
	}
	t, err := fn()
	if err != nil {
		return t, err
	}
	m.mu.Lock()
	if m.vals == nil {
		m.vals = make(map[string]any)
	}
	m.vals[key] = t
	m.mu.Unlock()
	return t, nil
}
