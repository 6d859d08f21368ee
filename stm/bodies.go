package stm

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// bodies is the set of goroutines running a body of one DB, so that a Run
// called from inside a body (a nested Run) fails at once with ErrNestedRun
// instead of committing on its own, or hanging behind the serial gate its
// own outer transaction holds.
//
// A goroutine is identified by getg. It takes a slot in a small open
// addressing table, probing the aligned window of bodyWindow slots (one
// cache line) its hash picks; a
// lookup scans the whole window (slots are freed in any order, so an empty
// slot does not end the search). A goroutine that finds its window full goes
// to the overflow map, under a mutex.
//
// A slot also keeps the transaction state its last holder used, for the
// next one: the compare-and-swap that takes the slot and the store that
// frees it replace a sync.Pool's Get and Put, so finding nested Runs costs
// a read-only transaction nothing it did not pay before. A Run that must
// give up its slot before it ends (to wait for the disk, or to run hooks,
// which may start transactions of their own) takes its state with it, and
// returns it to the DB's pool.
type bodies struct {
	slots [bodySlots]bodySlot
	// flushed is each slot's count of first-attempt commits moved out of
	// its word.
	flushed [bodySlots]atomic.Uint64

	overflowN atomic.Int64
	mu        struct {
		sync.Mutex
		overflow map[uintptr]struct{}
	}
}

// bodySlot is one goroutine's place in bodies.
//
// Its word w holds the holder's goroutine in the low 48 bits (0 when the
// slot is free) and, above them, a count of the transactions that committed
// at their first attempt while holding it. The count rides on the store
// that frees the slot, so counting a commit costs no locked instruction of
// its own. When the count fills its bits, the holder moves it to flushed:
// it marks the word (flushing), adds to flushed, and clears the count.
// Stats reads a slot's count as flushed plus the word's, retrying while a
// move is under way, so the sum it sees never goes down.
type bodySlot struct {
	w atomic.Uint64
	// t is the transaction state the slot lends; only the goroutine that
	// holds the slot touches it (taking and freeing the slot order the
	// accesses).
	t *txn
}

const (
	holderBits = 48
	holderMask = 1<<holderBits - 1
	countBits  = 14
	countMask  = 1<<countBits - 1
	// inHooks marks a slot whose holder has left its body and runs its
	// hooks: a Run a hook starts is not nested, and takes a slot of its own.
	inHooks  = 1 << 62
	flushing = 1 << 63
)

const (
	bodySlots  = 256
	bodyWindow = 4
)

// bodyHash returns the first slot of g's window: the top 8 bits of a
// multiplicative hash (0..255), aligned down to a window.
func bodyHash(g uintptr) uint {
	return uint((uint64(g)*0x9e3779b97f4a7c15)>>56) &^ (bodyWindow - 1)
}

// enter marks g as running a body. It returns the slot taken (-1 for the
// overflow map), or nested = true if g already runs a body of this DB.
func (b *bodies) enter(g uintptr) (slot int, nested bool) {
	h := bodyHash(g)
	win := (*[bodyWindow]bodySlot)(b.slots[h : h+bodyWindow])
	for {
		// One pass over the window: g's own slot (a nested Run), and the
		// first free one. A slot of g's running hooks is neither.
		free := -1
		var fv uint64
		for i := range win {
			v := win[i].w.Load()
			switch v & holderMask {
			case uint64(g):
				if v&inHooks == 0 {
					return 0, true
				}
			case 0:
				if free < 0 {
					free, fv = i, v
				}
			}
		}
		if b.overflowN.Load() > 0 {
			b.mu.Lock()
			_, ok := b.mu.overflow[g]
			b.mu.Unlock()
			if ok {
				return 0, true
			}
		}
		if free < 0 || uint64(g) > holderMask {
			b.mu.Lock()
			if b.mu.overflow == nil {
				b.mu.overflow = make(map[uintptr]struct{})
			}
			b.mu.overflow[g] = struct{}{}
			b.overflowN.Add(1)
			b.mu.Unlock()
			return -1, false
		}
		if win[free].w.CompareAndSwap(fv, fv|uint64(g)) {
			return int(h) + free, false
		}
	}
}

// exit releases what enter took; committed counts a first-attempt commit
// in the slot.
func (b *bodies) exit(g uintptr, slot int, committed bool) {
	if slot < 0 {
		b.exitOverflow(g)
		return
	}
	s := &b.slots[slot]
	n := s.w.Load() >> holderBits & countMask // the holder's own word
	if committed {
		n++
	}
	if n < countMask {
		s.w.Store(n << holderBits)
		return
	}
	s.w.Store(flushing | n<<holderBits | uint64(g))
	b.flushed[slot].Add(n)
	s.w.Store(0)
}

// commits returns the first-attempt commits counted in the slots.
func (b *bodies) commits() uint64 {
	var sum uint64
	for i := range b.slots {
		w := &b.slots[i].w
		for {
			w1 := w.Load()
			if w1&flushing != 0 {
				runtime.Gosched()
				continue
			}
			f1 := b.flushed[i].Load()
			w2 := w.Load()
			if w1 == w2 && f1 == b.flushed[i].Load() {
				sum += f1 + w1>>holderBits&countMask
				break
			}
		}
	}
	return sum
}

// take returns the transaction state for a Run that entered with slot.
func (db *DB) take(slot int) *txn {
	if uint(slot) < bodySlots {
		if t := db.bodies.slots[slot].t; t != nil {
			return t
		}
	}
	return db.takeSlow(slot)
}

func (db *DB) takeSlow(slot int) *txn {
	if slot < 0 {
		return db.pool.Get().(*txn)
	}
	s := &db.bodies.slots[slot]
	if s.t == nil {
		s.t = db.pool.Get().(*txn)
	}
	return s.t
}

// runHooks marks the slot as running hooks (see inHooks); exit clears it.
func (b *bodies) runHooks(slot int) {
	if slot >= 0 {
		w := &b.slots[slot].w
		w.Store(w.Load() | inHooks)
	}
}

// detach frees the slot early: its state leaves with the Run, which returns
// it to the pool when it ends.
func (db *DB) detach(g uintptr, slot int) {
	if slot >= 0 {
		db.bodies.slots[slot].t = nil
	}
	db.bodies.exit(g, slot, false)
}

func (b *bodies) exitOverflow(g uintptr) {
	b.mu.Lock()
	delete(b.mu.overflow, g)
	b.overflowN.Add(-1)
	b.mu.Unlock()
}
