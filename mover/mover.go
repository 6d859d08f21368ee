package mover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zest-stm/zest/effectqueue"
)

// Mover carries committed entries from an effect queue to sinks.
//
// Entries with the same ordering key (Item.Key) are applied one at a time,
// in sequence order; different keys run in parallel, up to
// Options.Concurrency. An entry is acked only after its sink confirmed it.
// Failures are retried with capped exponential backoff and full jitter, the
// retry state persisted with the entry; permanent errors and exhausted
// attempts go to the queue's dead letters with the reason. A retrying key
// holds no worker, so it blocks only its own lane.
//
// A Mover is safe for concurrent use: Run in one goroutine; Shutdown, Pause,
// Resume, Paused, Lanes, Stats and WaitDrained from any.
type Mover struct {
	q       store
	claimed *effectqueue.Queue // the claim released when Run returns (see ErrQueueTaken)
	writer  string             // the queue's id (Delivery.Writer)
	sinks   map[string]*sinkRef
	opts    Options
	logs    *logLimiter

	life struct {
		sync.Mutex
		started, stopped bool
	}
	stop chan struct{} // closed by Shutdown
	done chan struct{} // closed when Run returns

	// abandonCtx ends when work in flight must be abandoned: Shutdown's
	// context ended, or Run's did.
	abandonCtx context.Context
	abandonAll context.CancelFunc

	// Set by Run before its workers start, read-only after.
	//
	// replayUpTo is the attempt lease found when Run started: entries up to
	// it may have been applied by an earlier run that stopped before acking
	// them. applyCtx is the context of sink calls and state writes.
	replayUpTo uint64
	applyCtx   context.Context
	// leased is this run's lease, persisted before any entry beyond the
	// previous lease is handed to a lane. Only dispatch uses it.
	leased uint64

	mu struct {
		sync.Mutex
		lanes    map[string]*lane
		ready    []*lane // lanes with entries, not running, not backing off
		buffered int     // entries read and not yet acked or dead-lettered
		// bufferedBytes sums the payloads of entries read and still in a
		// lane (freed when the entry leaves its lane).
		bufferedBytes int64
		// readEntries and readBytes size the next read (average entry).
		readEntries, readBytes int64
		failing                int // lanes whose head entry is failing
		stopping               bool
		paused                 bool
	}
	work  *sync.Cond // signalled when a lane becomes ready, on resume and on stop
	space chan struct{}
	// acks gathers the sequence numbers of entries done (delivered or
	// superseded) until ackLoop writes them. A worker wakes ackLoop
	// (ackWake) only when a write is due, not for every entry: at a few
	// hundred entries a second, a wake-up per entry cost more CPU than the
	// write. closed is set once the workers have stopped.
	acks struct {
		sync.Mutex
		seqs   []uint64
		closed bool
	}
	ackWake chan struct{}

	// progress is closed and replaced each time entries are acked or
	// dead-lettered (see WaitDrained).
	progress atomic.Pointer[chan struct{}]

	stats counters
}

// sinkRef is a sink with its name in New's map and its counters. Sinks are
// compared by their sinkRef, never by value: a Sink need not be comparable.
type sinkRef struct {
	name  string
	sink  Sink
	stats sinkCounters
}

// New returns a mover for q. sinks maps an entry Kind, or the part of it
// before the first '.', to its sink: {"s3": sink} serves "s3.put" and
// "s3.delete". opts may be nil for defaults.
//
// A queue has at most one Mover at a time in a process: New returns
// ErrQueueTaken while another one holds q, until that one's Run returns (or
// its Shutdown, if it never ran). A Mover that is never run must be shut
// down to release the queue. Two processes cannot open one queue directory
// (Badger locks it).
func New(q *effectqueue.Queue, sinks map[string]Sink, opts *Options) (*Mover, error) {
	if q == nil {
		return nil, errors.New("mover: nil queue")
	}
	return newMover(q, q, sinks, opts)
}

// newMover is New over any store; key is the queue claimed.
func newMover(key *effectqueue.Queue, q store, sinks map[string]Sink, opts *Options) (*Mover, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(sinks) == 0 {
		return nil, ErrNoSinks
	}
	m := &Mover{
		q:       q,
		claimed: key,
		writer:  q.ID(),
		sinks:   make(map[string]*sinkRef, len(sinks)),
		opts:    o,
		logs:    newLogLimiter(o.Logger, o.LogInterval),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		space:   make(chan struct{}, 1),
		ackWake: make(chan struct{}, 1),
	}
	for k, s := range sinks {
		if s == nil {
			return nil, fmt.Errorf("mover: sink %q is nil", k)
		}
		m.sinks[k] = &sinkRef{name: k, sink: s}
	}
	if err := claim(key, m); err != nil {
		return nil, err
	}
	m.abandonCtx, m.abandonAll = context.WithCancel(context.Background())
	m.mu.lanes = make(map[string]*lane)
	m.mu.paused = o.StartPaused
	m.work = sync.NewCond(&m.mu)
	ch := make(chan struct{})
	m.progress.Store(&ch)
	m.stats.init()
	return m, nil
}

func (m *Mover) sinkFor(kind string) *sinkRef {
	if s, ok := m.sinks[kind]; ok {
		return s
	}
	if i := strings.IndexByte(kind, '.'); i >= 0 {
		return m.sinks[kind[:i]]
	}
	return nil
}

// Run moves entries until ctx ends or Shutdown is called, and returns nil
// after Shutdown or ctx.Err(). When ctx ends, entries being applied are
// abandoned: they are neither acked nor dead-lettered, and the next Run
// applies them again. A Mover runs once: a second Run returns ErrRunning,
// and a Run after Shutdown returns nil at once. When Run returns, the queue
// is free for a new Mover.
func (m *Mover) Run(ctx context.Context) error {
	m.life.Lock()
	if m.life.started {
		m.life.Unlock()
		return ErrRunning
	}
	m.life.started = true
	stopped := m.life.stopped
	m.life.Unlock()
	defer close(m.done)
	defer unclaim(m.claimed, m)
	defer m.abandonAll()
	if stopped {
		return nil
	}
	lease, err := m.q.ConsumerState(leaseName)
	if err != nil {
		return fmt.Errorf("mover: read attempt lease: %w", err)
	}
	m.replayUpTo, m.leased = lease, lease
	applyCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(m.abandonCtx, cancel)()
	m.applyCtx = applyCtx

	var workers, acker, summary sync.WaitGroup
	for range m.opts.Concurrency {
		workers.Go(m.worker)
	}
	acker.Go(m.ackLoop)
	quit := make(chan struct{})
	summary.Go(func() { m.summaryLoop(quit) })

	err = m.dispatch(ctx)
	if err != nil {
		m.abandonAll() // ctx ended: do not wait for in-flight applies
	}
	m.mu.Lock()
	m.mu.stopping = true
	m.mu.Unlock()
	m.work.Broadcast()
	workers.Wait()
	m.acks.Lock()
	m.acks.closed = true
	m.acks.Unlock()
	m.wakeAcker()
	acker.Wait()
	close(quit)
	summary.Wait()
	return err
}

// Shutdown stops taking entries and waits until the entries being applied
// are done and their acks written, or ctx ends, in which case they are
// abandoned (neither acked nor dead-lettered; the next Run applies them
// again, checking what landed). Shutdown never dead-letters an entry. It
// returns ctx.Err() if it had to abandon. It may be called before, during
// or after Run, and more than once.
func (m *Mover) Shutdown(ctx context.Context) error {
	m.life.Lock()
	if !m.life.stopped {
		m.life.stopped = true
		close(m.stop)
	}
	started := m.life.started
	m.life.Unlock()
	if !started {
		unclaim(m.claimed, m)
		return nil
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		m.abandonAll()
		<-m.done
		return ctx.Err()
	}
}

// Pause stops the mover from starting deliveries: applies in flight finish
// (and are acked), retry timers keep running, and committed entries keep
// being read up to Options.MaxBuffered, but no sink is called until Resume.
// Pause is not persisted: a new Mover (after a restart) starts unpaused
// unless Options.StartPaused is set. Pausing a paused mover does nothing.
func (m *Mover) Pause() {
	m.mu.Lock()
	was := m.mu.paused
	m.mu.paused = true
	m.mu.Unlock()
	if !was {
		m.opts.Logger.Info("mover: paused; no delivery starts until Resume")
	}
}

// Resume lets a paused mover deliver again. Resuming a running mover does
// nothing.
func (m *Mover) Resume() {
	m.mu.Lock()
	was := m.mu.paused
	m.mu.paused = false
	m.mu.Unlock()
	m.work.Broadcast()
	if was {
		m.opts.Logger.Info("mover: resumed")
	}
}

// Paused reports whether the mover is paused.
func (m *Mover) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.paused
}

// dispatch reads committed entries into lanes until stopped. It returns
// ctx.Err() if ctx ended, nil after Shutdown.
func (m *Mover) dispatch(ctx context.Context) error {
	poll := time.NewTicker(m.opts.PollInterval)
	defer poll.Stop()
	var readPos uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.stop:
			return nil
		default:
		}
		wake := m.q.Notify() // before Read, so that no commit goes unnoticed
		m.mu.Lock()
		room := m.readRoomLocked()
		m.mu.Unlock()
		if room > 0 {
			items, err := m.q.Read(ctx, readPos, room)
			switch {
			case errors.Is(err, effectqueue.ErrClosed):
				m.opts.Logger.Error("mover: the queue was closed; stopping")
				return nil
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				m.logs.log(levelError, "mover: read failed; retrying at the next poll", "err", err)
			case len(items) > 0:
				last := items[len(items)-1].Seq
				if last > m.leased {
					// Entries beyond the lease may be applied from now on:
					// extend it first, so that a crash cannot hide that.
					if err := m.q.SetConsumerState(ctx, leaseName, last+leaseAhead); err != nil {
						m.logs.log(levelError, "mover: could not extend the attempt lease; retrying at the next poll", "err", err)
						break
					}
					m.leased = last + leaseAhead
				}
				readPos = last
				m.enqueue(items)
				continue
			}
		} else {
			wake = nil // full: wait for space, not for commits
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.stop:
			return nil
		case <-wake:
		case <-m.space:
		case <-poll.C:
		}
	}
}

// readRoomLocked returns how many entries the next read may take: within
// Options.MaxBuffered entries and, at the average entry size seen so far,
// within Options.MaxBufferedBytes (at least one entry while under it).
// REQUIRES: m.mu held.
func (m *Mover) readRoomLocked() int {
	room := min(m.opts.MaxBuffered-m.mu.buffered, 256)
	free := m.opts.MaxBufferedBytes - m.mu.bufferedBytes
	if room <= 0 || free <= 0 {
		return 0
	}
	switch {
	case m.mu.readEntries == 0:
		return 1 // learn the entries' size first
	case m.mu.readBytes > 0:
		avg := max(m.mu.readBytes/m.mu.readEntries, 1)
		room = int(min(int64(room), max(free/avg, 1)))
	}
	return room
}

// leaseName is the queue consumer state holding the attempt lease, and
// leaseAhead how far beyond the entries read it is extended at a time.
const (
	leaseName  = "mover.attempted"
	leaseAhead = 1024
)

// advance wakes WaitDrained.
func (m *Mover) advance() {
	ch := make(chan struct{})
	close(*m.progress.Swap(&ch))
}

// settled reports whether every entry the mover read was acked or
// dead-lettered.
func (m *Mover) settled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.buffered == 0
}

// WaitDrained blocks until the queue has no pending entry (every committed
// entry was delivered or dead-lettered) and the mover has finished with
// every entry it read, so that Stats counts them all; or until ctx ends.
func (m *Mover) WaitDrained(ctx context.Context) error {
	for {
		ch := m.progress.Load()
		if m.q.Depth() == 0 && m.settled() {
			return nil
		}
		select {
		case <-*ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
