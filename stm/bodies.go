package stm

import (
	"sync"
	"sync/atomic"
)

// bodies records which goroutines run a body of one DB, so that a Run
// called from inside a body (a nested Run) fails at once with ErrNestedRun
// instead of committing on its own, or hanging behind the serial gate its
// own outer transaction holds.
//
// Each goroutine that runs a body has a place, found by its getg identity.
// Only one running goroutine has a given identity, and a place's state is
// written only by the goroutine it belongs to, so entering and leaving a
// body are a load and a store: no locked instruction, where taking a
// shared slot would cost a compare-and-swap and freeing it an exchange.
//
// Where getg is the address of the runtime's goroutine descriptor (fastG),
// places live in a hash table that only grows: the runtime reuses the
// descriptors of goroutines that ended, and the goroutine that gets one
// inherits its place, so the table holds at most one place per goroutine
// the process ever ran at the same time. It hands over the place through
// its state word: the last store of the goroutine that ended is seen by the
// first load of the next one. Elsewhere getg is a goroutine id, never
// reused, and places are kept in a map under a mutex only while their
// goroutine runs (getg there costs a microsecond anyway).
//
// A place also keeps the transaction state its goroutine used, for its
// next Run, so that a Run costs no sync.Pool Get and Put. Only the first
// lendPlaces places keep one (memory stays bounded however many
// goroutines run bodies); Runs of the others, and Runs started by hooks
// while their goroutine's own state is busy, use the DB's pool.
type bodies struct {
	tab atomic.Pointer[placeTable]
	mu  struct {
		sync.Mutex
		n    int                // places in tab
		byID map[uintptr]*place // !fastG: places of goroutines in a body
	}
}

type placeTable struct {
	mask   uint64
	places []atomic.Pointer[place]
}

// place is one goroutine's. Only that goroutine writes w and touches t.
type place struct {
	g uintptr // the goroutine's identity, set before the place is shared
	// w is the state word: inBody, inHooks, and in the low bits the count
	// of transactions that committed at their first attempt here, so that
	// counting a commit costs no locked instruction (Stats sums them).
	w     atomic.Uint64
	t     *txn // the kept transaction state, or nil
	lends bool // whether the place keeps a transaction state
	// A place has a cache line of its own: its goroutine's stores to w
	// would otherwise take the line from the goroutines of its neighbours.
	_ [64 - 8 - 8 - 8 - 8]byte
}

const (
	// inBody marks a goroutine running a body: a Run it starts is nested.
	inBody = 1 << 63
	// inHooks marks a goroutine whose Run left its body and runs its
	// hooks: a Run a hook starts is not nested.
	inHooks   = 1 << 62
	countMask = inHooks - 1

	lendPlaces = 256
	minPlaces  = 64
)

func placeHash(g uintptr) uint64 {
	h := uint64(g) * 0x9e3779b97f4a7c15
	return h ^ h>>29
}

// find returns g's place, or nil if it has none.
func (b *bodies) find(g uintptr) *place {
	if !fastG {
		b.mu.Lock()
		p := b.mu.byID[g]
		b.mu.Unlock()
		return p
	}
	tab := b.tab.Load()
	if tab == nil {
		return nil
	}
	for i := placeHash(g) & tab.mask; ; i = (i + 1) & tab.mask {
		p := tab.places[i].Load()
		if p == nil || p.g == g {
			return p
		}
	}
}

// claim gives g a place. REQUIRES: g has none.
func (b *bodies) claim(g uintptr) *place {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := &place{g: g, lends: fastG && b.mu.n < lendPlaces}
	b.mu.n++
	if !fastG {
		if b.mu.byID == nil {
			b.mu.byID = make(map[uintptr]*place)
		}
		b.mu.byID[g] = p
		return p
	}
	tab := b.tab.Load()
	if tab == nil || 4*b.mu.n > 3*len(tab.places) {
		size := minPlaces
		if tab != nil {
			size = 2 * len(tab.places)
		}
		grown := &placeTable{mask: uint64(size - 1), places: make([]atomic.Pointer[place], size)}
		if tab != nil {
			for i := range tab.places {
				if q := tab.places[i].Load(); q != nil {
					grown.insert(q)
				}
			}
		}
		tab = grown
		b.tab.Store(tab)
	}
	tab.insert(p)
	return p
}

func (t *placeTable) insert(p *place) {
	for i := placeHash(p.g) & t.mask; ; i = (i + 1) & t.mask {
		if t.places[i].Load() == nil {
			t.places[i].Store(p)
			return
		}
	}
}

// enter marks g as running a body. It returns g's place and its state
// before, for exit, or nested = true if g already runs a body of this DB.
func (b *bodies) enter(g uintptr) (p *place, prev uint64, nested bool) {
	p = b.find(g)
	if p == nil {
		p = b.claim(g)
	}
	w := p.w.Load()
	if w&inBody != 0 {
		return nil, 0, true
	}
	storeRelease(&p.w, w|inBody)
	return p, w &^ countMask, false
}

// exit ends what enter began: the place's state goes back to prev, and
// committed counts a first-attempt commit.
func (b *bodies) exit(p *place, prev uint64, committed bool) {
	p.leave(prev, committed)
	if !fastG && prev == 0 {
		b.forget(p)
	}
}

// leave gives p its state prev back, counting a first-attempt commit if
// committed.
func (p *place) leave(prev uint64, committed bool) {
	n := p.w.Load() & countMask
	if committed {
		n++
	}
	storeRelease(&p.w, prev|n)
}

// forget drops the place of a goroutine that left its body, where places
// are kept only while their goroutine runs one (!fastG).
func (b *bodies) forget(p *place) {
	b.mu.Lock()
	delete(b.mu.byID, p.g)
	b.mu.n--
	b.mu.Unlock()
}

// runHooks marks p's goroutine as out of its body and running hooks (see
// inHooks); exit restores the state enter found.
func (b *bodies) runHooks(p *place) {
	storeRelease(&p.w, p.w.Load()&^inBody|inHooks)
}

// commits returns the first-attempt commits counted in the places.
func (b *bodies) commits() uint64 {
	var sum uint64
	if !fastG {
		return 0 // counted in the DB's stats instead (see Run)
	}
	if tab := b.tab.Load(); tab != nil {
		for i := range tab.places {
			if p := tab.places[i].Load(); p != nil {
				sum += p.w.Load() & countMask
			}
		}
	}
	return sum
}

// take returns the transaction state for a Run that entered p with
// state prev, and whether it is p's kept one.
func (db *DB) take(p *place, prev uint64) (*txn, bool) {
	if prev == 0 && p.t != nil {
		return p.t, true
	}
	return db.takeSlow(p, prev)
}

func (db *DB) takeSlow(p *place, prev uint64) (*txn, bool) {
	t := db.pool.Get().(*txn)
	if prev == 0 && p.lends {
		p.t = t
		return t, true
	}
	return t, false
}
