package saga

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Kind is the effect queue kind of the runner's dispatch entries. Register
// the runner's Sink under it (or under "saga") in the application's mover.
const Kind = "saga.call"

// Runner runs the sagas of one stm.DB: it keeps their records in durable
// tables, carries out their remote steps through its Sink (applied by a
// mover), and fires their retries (Run).
//
// A Runner is safe for concurrent use. Register flows before starting
// sagas; call Run once, in its own goroutine.
type Runner struct {
	db    *stm.DB
	q     *effectqueue.Queue
	opts  Options
	sagas *table.Table[string, record]
	stuck *table.Table[string, stuckMark]

	mu struct {
		sync.RWMutex
		flows map[string]map[int]flowDef // name → version → flow
	}

	counts struct {
		started, done, compensated, aborted, stuck atomic.Int64
	}

	running atomic.Bool
	timers  timers

	// progress is closed and replaced after every commit that changed a
	// saga (see Wait).
	progress atomic.Pointer[chan struct{}]
}

// stuckMark is the value of the stuck index: the ids of stuck sagas.
type stuckMark struct{}

// callMsg is the payload of a dispatch entry.
type callMsg struct {
	ID    string `msgpack:"i"`
	Token uint64 `msgpack:"t"`
}

// New returns the runner of db's sagas, with their records in durable
// tables of db (so q must be db's effect queue, already open) and their
// calls dispatched through q. It loads the records and counts them. opts may
// be nil for defaults; invalid fields are reported together.
func New(db *stm.DB, q *effectqueue.Queue, opts *Options) (*Runner, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if db == nil || q == nil {
		return nil, fmt.Errorf("saga: New needs a DB and its effect queue")
	}
	r := &Runner{db: db, q: q, opts: o}
	r.mu.flows = make(map[string]map[int]flowDef)
	r.timers.wake = make(chan struct{}, 1)
	ch := make(chan struct{})
	r.progress.Store(&ch)
	if r.sagas, err = table.NewDurable[string, record](db, o.Name+".sagas", nil); err != nil {
		return nil, fmt.Errorf("saga: open table: %w", err)
	}
	if r.stuck, err = table.NewDurable[string, stuckMark](db, o.Name+".stuck", nil); err != nil {
		return nil, fmt.Errorf("saga: open table: %w", err)
	}
	var backoffs []timer
	err = db.Run(context.Background(), func(tx *stm.Tx) error {
		backoffs = backoffs[:0]
		var started, done, comp, abort, stuck int64
		r.sagas.Scan(tx, func(id string, rec record) bool {
			started++
			switch rec.Phase {
			case Done:
				done++
			case Compensated:
				comp++
			case Aborted:
				abort++
			case Stuck:
				stuck++
			}
			if rec.Wait == waitBackoff {
				backoffs = append(backoffs, timer{at: rec.NextAt, id: id, token: rec.Token})
			}
			return true
		})
		r.counts.started.Store(started)
		r.counts.done.Store(done)
		r.counts.compensated.Store(comp)
		r.counts.aborted.Store(abort)
		r.counts.stuck.Store(stuck)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saga: load: %w", err)
	}
	for _, t := range backoffs {
		r.timers.add(t)
	}
	return r, nil
}

func (r *Runner) register(f flowDef) error {
	name, version := f.def()
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.runner() != nil {
		return fmt.Errorf("%w: %s version %d is registered with a runner", ErrRegistered, name, version)
	}
	vs := r.mu.flows[name]
	if vs == nil {
		vs = make(map[int]flowDef)
		r.mu.flows[name] = vs
	}
	if vs[version] != nil {
		return fmt.Errorf("%w: %s version %d", ErrRegistered, name, version)
	}
	vs[version] = f
	f.setRunner(r)
	return nil
}

// flowOf returns the flow that can run rec: its own version if registered,
// or else the newest registered version whose steps have the same names at
// the same places. reason says why there is none.
func (r *Runner) flowOf(rec *record) (f flowDef, reason string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	vs := r.mu.flows[rec.Flow]
	if f = vs[rec.Version]; f != nil && sameSteps(f, rec) {
		return f, ""
	}
	best := 0
	for v, g := range vs {
		if v > best && sameSteps(g, rec) {
			f, best = g, v
		}
	}
	if f != nil {
		return f, ""
	}
	if len(vs) == 0 {
		return nil, fmt.Sprintf("flow %s is not registered", rec.Flow)
	}
	step := "(end)"
	if rec.Cursor >= 0 && rec.Cursor < len(rec.Steps) {
		step = rec.Steps[rec.Cursor].Name
	}
	return nil, fmt.Sprintf("flow %s version %d (at step %s) matches no registered version: its steps changed", rec.Flow, rec.Version, step)
}

func sameSteps(f flowDef, rec *record) bool {
	if f.numSteps() != len(rec.Steps) {
		return false
	}
	for i := range rec.Steps {
		if f.stepName(i) != rec.Steps[i].Name {
			return false
		}
	}
	return true
}

func (r *Runner) checkID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrBadID)
	}
	if len(id) > r.opts.MaxIDLen {
		return fmt.Errorf("%w: %d bytes, limit %d (Options.MaxIDLen)", ErrBadID, len(id), r.opts.MaxIDLen)
	}
	return nil
}

// Sink returns the mover.Sink that carries out the runner's remote steps.
// Register it in the application's mover under Kind:
//
//	mover.New(q, map[string]mover.Sink{saga.Kind: r.Sink(), "s3": s3}, nil)
//
// The mover applies one entry per ordering key at a time, and the runner
// keys its entries by saga id: one attempt of one saga is in flight at a
// time. Sagas run in parallel up to the mover's Options.Concurrency.
func (r *Runner) Sink() mover.Sink { return sink{r} }

// Run fires the retries of remote steps when their backoff ends, until ctx
// ends; it returns ctx.Err(). Without Run, sagas wait after a failed
// attempt. Run once per Runner.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	for {
		due, next := r.timers.due(time.Now())
		for _, t := range due {
			if err := r.fire(ctx, t); err != nil && ctx.Err() == nil {
				r.opts.Logger.Error("saga: could not dispatch a retry; trying again shortly", "saga", t.id, "err", err)
				t.at = time.Now().Add(time.Second)
				r.timers.add(t)
			}
		}
		var tc <-chan time.Time
		var tm *time.Timer
		if !next.IsZero() {
			tm = time.NewTimer(time.Until(next))
			tc = tm.C
		}
		select {
		case <-ctx.Done():
		case <-r.timers.wake:
		case <-tc:
		}
		if tm != nil {
			tm.Stop()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// fire dispatches the retry t if the saga still waits for it.
func (r *Runner) fire(ctx context.Context, t timer) error {
	match := func(rec *record) bool { return rec.Wait == waitBackoff && rec.Token == t.token }
	return r.update(ctx, t.id, match, func(tx *stm.Tx, rec *record, f flowDef, g *guard) error {
		return r.dispatch(tx, t.id, rec)
	})
}

// dispatch enqueues the call of the step at the cursor.
func (r *Runner) dispatch(tx *stm.Tx, id string, rec *record) error {
	rec.Token++
	rec.Wait = waitCall
	rec.NextAt = time.Time{}
	if rec.Phase == Running {
		rec.Steps[rec.Cursor].Sent = true
	}
	payload, err := msgpack.Marshal(callMsg{ID: id, Token: rec.Token})
	if err != nil {
		return err
	}
	return r.q.Enqueue(tx, effectqueue.Entry{Kind: Kind, Key: "saga/" + id, Payload: payload})
}

// timer is a retry due at a time.
type timer struct {
	at    time.Time
	id    string
	token uint64
}

// timers is the heap of pending retries.
type timers struct {
	mu   sync.Mutex // protects h
	h    timerHeap
	wake chan struct{}
}

func (ts *timers) add(t timer) {
	ts.mu.Lock()
	heap.Push(&ts.h, t)
	ts.mu.Unlock()
	select {
	case ts.wake <- struct{}{}:
	default:
	}
}

// due pops the timers due at now and returns the time of the next one.
func (ts *timers) due(now time.Time) (due []timer, next time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for len(ts.h) > 0 && !ts.h[0].at.After(now) {
		due = append(due, heap.Pop(&ts.h).(timer))
	}
	if len(ts.h) > 0 {
		next = ts.h[0].at
	}
	return due, next
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// changed wakes Wait.
func (r *Runner) changed() {
	ch := make(chan struct{})
	close(*r.progress.Swap(&ch))
}

// Wait blocks until saga id is final (Done, Compensated, Aborted) or Stuck,
// and returns its Info, or ErrNotFound, or ctx.Err() if ctx ends first.
func (r *Runner) Wait(ctx context.Context, id string) (Info, error) {
	for {
		ch := r.progress.Load()
		in, err := r.Inspect(ctx, id)
		if err != nil || in.Phase.Final() || in.Phase == Stuck {
			return in, err
		}
		select {
		case <-*ch:
		case <-ctx.Done():
			return Info{}, ctx.Err()
		}
	}
}
