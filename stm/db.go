package stm

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/zest-stm/zest/internal/seam"
)

// DB is an in-memory transactional database: a set of Vars (usually held by
// package table) that transactions read and write through Run.
//
// A DB is safe for concurrent use by any number of goroutines.
type DB struct {
	opts Options

	// clock is the global version clock: every update commit takes the next
	// value as its write version, and a snapshot is a clock value.
	clock atomic.Uint64

	// seqMu is the commit sequencer. A commit with durable records takes its
	// write version, stages its records and appends them to the log while
	// holding it, so the log sees commits in write-version order.
	seqMu sync.Mutex

	// gate is non-nil while a transaction runs in serial mode; update
	// commits of other transactions wait for gate.done before locking.
	gate      atomic.Pointer[gate]
	serialSem chan struct{}

	log     atomic.Pointer[logSlot]
	ended   atomic.Bool // closed or stopped: Err's fast path
	closed  atomic.Bool
	stopped atomic.Pointer[stopCause]

	dur    durableState // the durable watermark, see durable.go
	bodies bodies       // goroutines inside a body, see bodies.go

	mu struct {
		sync.Mutex
		groups map[string]*Group // registered groups, by name
	}

	ext   sync.Map // extension state of packages built on stm, see Extension
	pool  sync.Pool
	stats counters
}

type gate struct{ done chan struct{} }

type logSlot struct{ l seam.Log }

type stopCause struct{ err error }

// Group names a set of Vars, such as one table's records, for statistics.
// It is safe for concurrent use.
type Group struct {
	name      string
	conflicts atomic.Uint64
}

// Name returns the name the group was registered with.
func (g *Group) Name() string { return g.name }

// Open returns a new, empty DB. opts may be nil for defaults; Open copies it
// and reports every invalid field at once.
func Open(opts *Options) (*DB, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	db := &DB{opts: o, serialSem: make(chan struct{}, 1)}
	db.mu.groups = make(map[string]*Group)
	db.dur.init()
	db.pool.New = func() any { return &txn{db: db} }
	return db, nil
}

// Options returns a copy of the options the DB runs with.
func (db *DB) Options() Options { return db.opts }

// Register creates the group called name. Each name can be registered once
// per DB; a table registers its own name.
func (db *DB) Register(name string) (*Group, error) {
	if name == "" {
		return nil, fmt.Errorf("stm: register: empty name")
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, ok := db.mu.groups[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrNameTaken, name)
	}
	g := &Group{name: name}
	db.mu.groups[name] = g
	return g, nil
}

// extension returns the value stored under key for this DB, storing
// create() first if there is none. Packages built on stm keep their per-DB
// state here, so that nothing is global.
func (db *DB) extension(key any, create func() any) any {
	if v, ok := db.ext.Load(key); ok {
		return v
	}
	v, _ := db.ext.LoadOrStore(key, create())
	return v
}

// Close stops the DB from starting transactions: Run returns ErrClosed.
// Transactions already running finish normally. Close is idempotent.
func (db *DB) Close() error {
	db.closed.Store(true)
	db.ended.Store(true)
	return nil
}

// stop makes the DB refuse every further commit with an error wrapping
// ErrStopped and cause. A Log calls it when a write failed, so that memory
// never runs ahead of disk unnoticed. The first cause is kept.
func (db *DB) stop(cause error) {
	if db.stopped.CompareAndSwap(nil, &stopCause{cause}) {
		db.ended.Store(true)
		db.opts.Logger.Error("stm: database stopped accepting commits", "cause", cause)
		db.dur.wake()
	}
}

// The hooks of package internal/seam: the plumbing that packages built on
// stm use, and that applications do not see.
func init() {
	seam.TxLocal = func(tx *Tx, key any, create func() seam.Local) seam.Local { return tx.local(key, create) }
	seam.Extension = (*DB).extension
	seam.AttachLog = (*DB).attachLog
	seam.DetachLog = (*DB).detachLog
	seam.LogOf = (*DB).logOf
	seam.Stop = (*DB).stop
	seam.Durable = func(db *DB, v uint64) { db.dur.durable(v) }
	seam.InitVar = func(x any, g *Group, p unsafe.Pointer) { x.(varCell).initFrom(g, p) }
	seam.Observe = func(tx *Tx, x any) { tx.live().observe(x.(varCell).cellOf()) }
	seam.HasPointers = func(t reflect.Type) bool { return hasRefs(t, false) }
	seam.Retire = func(x any, neverWritten bool) bool { return x.(varCell).cellOf().retire(neverWritten) }
}

// Err returns nil while the DB accepts commits, ErrClosed after Close, or
// an error wrapping ErrStopped and the cause after Stop.
func (db *DB) Err() error {
	if !db.ended.Load() {
		return nil
	}
	return db.errSlow()
}

func (db *DB) errSlow() error {
	if s := db.stopped.Load(); s != nil {
		return fmt.Errorf("%w: %w", ErrStopped, s.err)
	}
	if db.closed.Load() {
		return ErrClosed
	}
	return nil
}
