package mover

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zest-stm/zest/effectqueue"
)

// ErrRunning is returned by Run when the mover is already running.
var ErrRunning = errors.New("mover: already running")

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
// A Mover is safe for concurrent use: Run in one goroutine, Shutdown and
// Stats from any.
type Mover struct {
	q     *effectqueue.Queue
	sinks map[string]Sink
	opts  Options

	running  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by Shutdown
	done     chan struct{} // closed when Run returns
	abandon  context.CancelFunc

	// replayUpTo is the attempt lease found when Run started: entries up
	// to it may have been applied by an earlier run that stopped before
	// acking them. leased is this run's lease, persisted before any entry
	// beyond the previous lease is handed to a lane.
	replayUpTo uint64
	leased     uint64
	applyCtx   context.Context

	mu struct {
		sync.Mutex
		lanes    map[string]*lane
		ready    []*lane // lanes with entries, not running, not backing off
		buffered int     // entries read and not done
		stopping bool
	}
	work  *sync.Cond // signalled when a lane becomes ready or on stop
	space chan struct{}
	acks  chan uint64

	// progress is closed and replaced each time entries are acked or
	// dead-lettered (see WaitDrained).
	progress atomic.Pointer[chan struct{}]

	stats counters
}

// lane holds the pending entries of one ordering key.
type lane struct {
	key     string
	items   []effectqueue.Item
	running bool // a worker serves it
	backoff bool // parked until a retry timer fires
	// attempt counts the attempts of items[0]; loaded says whether its
	// persisted retry state has been read.
	attempt int
	loaded  bool
}

// New returns a mover for q. sinks maps an entry Kind, or the part of it
// before the first '.', to its sink: {"s3": sink} serves "s3.put" and
// "s3.delete". opts may be nil for defaults.
func New(q *effectqueue.Queue, sinks map[string]Sink, opts *Options) (*Mover, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(sinks) == 0 {
		return nil, errors.New("mover: no sinks")
	}
	m := &Mover{
		q:     q,
		sinks: make(map[string]Sink, len(sinks)),
		opts:  o,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		space: make(chan struct{}, 1),
		acks:  make(chan uint64, 1024),
	}
	for k, s := range sinks {
		if s == nil {
			return nil, fmt.Errorf("mover: sink %q is nil", k)
		}
		m.sinks[k] = s
	}
	m.mu.lanes = make(map[string]*lane)
	m.work = sync.NewCond(&m.mu)
	ch := make(chan struct{})
	m.progress.Store(&ch)
	m.stats.init()
	return m, nil
}

func (m *Mover) sinkFor(kind string) Sink {
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
// applies them again. A Mover runs once.
func (m *Mover) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer close(m.done)
	lease, err := m.q.ConsumerState(leaseName)
	if err != nil {
		return fmt.Errorf("mover: read attempt lease: %w", err)
	}
	m.replayUpTo, m.leased = lease, lease
	var abandonCtx context.Context
	abandonCtx, m.abandon = context.WithCancel(context.WithoutCancel(ctx))
	m.applyCtx = abandonCtx
	defer m.abandon()

	var workers, acker sync.WaitGroup
	for range m.opts.Concurrency {
		workers.Go(m.worker)
	}
	acker.Go(m.ackLoop)

	err = m.dispatch(ctx)
	if err != nil {
		m.abandon() // ctx ended: do not wait for in-flight applies
	}
	m.mu.Lock()
	m.mu.stopping = true
	m.mu.Unlock()
	m.work.Broadcast()
	workers.Wait()
	close(m.acks)
	acker.Wait()
	return err
}

// Shutdown stops taking entries and waits until the entries being applied
// are done, or ctx ends, in which case they are abandoned (neither acked nor
// dead-lettered; the next Run applies them again). Shutdown never
// dead-letters an entry. It returns ctx.Err() if it had to abandon.
func (m *Mover) Shutdown(ctx context.Context) error {
	m.stopOnce.Do(func() { close(m.stop) })
	if !m.running.Load() {
		return nil
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		m.abandon()
		<-m.done
		return ctx.Err()
	}
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
		room := m.opts.MaxBuffered - m.mu.buffered
		m.mu.Unlock()
		if room > 0 {
			items, err := m.q.Read(ctx, readPos, min(room, 256))
			switch {
			case errors.Is(err, effectqueue.ErrClosed):
				m.opts.Logger.Error("mover: the queue was closed; stopping")
				return nil
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				m.opts.Logger.Error("mover: read failed; retrying at the next poll", "err", err)
			case len(items) > 0:
				last := items[len(items)-1].Seq
				if last > m.leased {
					// Entries beyond the lease may be applied from now on:
					// extend it first, so that a crash cannot hide that.
					if err := m.q.SetConsumerState(ctx, leaseName, last+leaseAhead); err != nil {
						m.opts.Logger.Error("mover: could not extend the attempt lease; retrying at the next poll", "err", err)
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

func (m *Mover) enqueue(items []effectqueue.Item) {
	m.mu.Lock()
	for _, it := range items {
		l := m.mu.lanes[it.Key]
		if l == nil {
			l = &lane{key: it.Key}
			m.mu.lanes[it.Key] = l
		}
		l.items = append(l.items, it)
		m.mu.buffered++
		if len(l.items) == 1 && !l.running && !l.backoff {
			m.mu.ready = append(m.mu.ready, l)
		}
	}
	m.mu.Unlock()
	m.work.Broadcast()
}

// worker serves ready lanes until the mover stops.
func (m *Mover) worker() {
	for {
		m.mu.Lock()
		for len(m.mu.ready) == 0 && !m.mu.stopping {
			m.work.Wait()
		}
		if m.mu.stopping {
			m.mu.Unlock()
			return
		}
		l := m.mu.ready[0]
		m.mu.ready = slices.Delete(m.mu.ready, 0, 1)
		l.running = true
		m.mu.Unlock()
		m.serve(l)
	}
}

// leaseName is the queue consumer state holding the attempt lease, and
// leaseAhead how far beyond the entries read it is extended at a time.
const (
	leaseName  = "mover.attempted"
	leaseAhead = 1024
)

// turn is how many entries a worker applies from one lane before it lets
// other lanes have a go.
const turn = 64

// serve applies l's entries in order until the lane is empty, parked for a
// retry, or its turn is over.
func (m *Mover) serve(l *lane) {
	for range turn {
		m.mu.Lock()
		if len(l.items) == 0 || m.mu.stopping {
			m.releaseLocked(l)
			m.mu.Unlock()
			return
		}
		it := l.items[0]
		if m.supersededLocked(l, it) {
			m.popLocked(l)
			m.mu.Unlock()
			m.stats.superseded.Add(1)
			m.acks <- it.Seq
			continue
		}
		m.mu.Unlock()

		switch wait, ok := m.apply(l, it); {
		case !ok: // abandoned at shutdown
			m.mu.Lock()
			m.releaseLocked(l)
			m.mu.Unlock()
			return
		case wait > 0:
			m.park(l, wait)
			return
		default:
			m.mu.Lock()
			m.popLocked(l)
			m.mu.Unlock()
		}
	}
	m.mu.Lock()
	m.releaseLocked(l)
	m.mu.Unlock()
}

// supersededLocked reports whether it can be skipped because a newer entry
// in its lane replaces its effect: always allowed with Options.Coalesce, and
// for entries a previous run may have applied (applying them again could
// briefly roll the key back).
// REQUIRES: m.mu held.
func (m *Mover) supersededLocked(l *lane, it effectqueue.Item) bool {
	if !m.opts.Coalesce && it.Seq > m.replayUpTo {
		return false
	}
	sup, ok := m.sinkFor(it.Kind).(Superseder)
	if !ok {
		return false
	}
	for _, newer := range l.items[1:] {
		if m.sinkFor(newer.Kind) == m.sinkFor(it.Kind) && sup.Supersedes(newer, it) {
			return true
		}
	}
	return false
}

// popLocked removes l's first entry, which is done.
// REQUIRES: m.mu held.
func (m *Mover) popLocked(l *lane) {
	l.items[0] = effectqueue.Item{}
	l.items = l.items[1:]
	l.attempt, l.loaded = 0, false
	m.mu.buffered--
	select {
	case m.space <- struct{}{}:
	default:
	}
}

// releaseLocked hands l back after a worker's turn.
// REQUIRES: m.mu held.
func (m *Mover) releaseLocked(l *lane) {
	l.running = false
	switch {
	case len(l.items) == 0:
		delete(m.mu.lanes, l.key)
	case !m.mu.stopping:
		m.mu.ready = append(m.mu.ready, l)
		m.work.Signal()
	}
}

// park takes l out of service until its retry is due.
func (m *Mover) park(l *lane, wait time.Duration) {
	m.mu.Lock()
	l.running, l.backoff = false, true
	m.mu.Unlock()
	time.AfterFunc(wait, func() {
		m.mu.Lock()
		l.backoff = false
		if !m.mu.stopping {
			m.mu.ready = append(m.mu.ready, l)
		}
		m.mu.Unlock()
		m.work.Signal()
	})
}

// apply makes one attempt at it. It returns ok == false if the attempt was
// abandoned by a shutdown, a positive wait if it must be retried after
// that long, and zero when the entry is done (delivered or dead-lettered).
func (m *Mover) apply(l *lane, it effectqueue.Item) (wait time.Duration, ok bool) {
	ctx := m.applyCtx
	sink := m.sinkFor(it.Kind)
	if sink == nil {
		m.deadLetter(it, fmt.Sprintf("no sink for kind %q", it.Kind))
		return 0, true
	}
	if !l.loaded {
		l.loaded = true
		if it.Seq <= m.replayUpTo {
			if rs, err := m.q.RetryStateOf(it.Seq); err == nil {
				l.attempt = rs.Attempts
			}
		}
	}
	l.attempt++
	d := Delivery{Item: it, Attempt: l.attempt, MayHaveLanded: l.attempt > 1 || it.Seq <= m.replayUpTo}
	m.stats.inFlight.Add(1)
	err := sink.Apply(ctx, d)
	m.stats.inFlight.Add(-1)
	if err == nil {
		m.stats.delivered.Add(1)
		m.stats.latency(time.Since(it.Committed))
		m.acks <- it.Seq
		return 0, true
	}
	if ctx.Err() != nil {
		l.attempt-- // not the sink's fault: the next run tries again
		return 0, false
	}
	if IsPermanent(err) {
		m.deadLetter(it, err.Error())
		return 0, true
	}
	if l.attempt >= m.opts.MaxAttempts {
		m.deadLetter(it, fmt.Sprintf("gave up after %d attempts: %v", l.attempt, err))
		return 0, true
	}
	m.stats.retries.Add(1)
	wait = m.backoff(l.attempt)
	rs := effectqueue.RetryState{Attempts: l.attempt, LastError: err.Error(), NextAt: time.Now().Add(wait)}
	if serr := m.q.SetRetryState(ctx, it.Seq, rs); serr != nil {
		m.opts.Logger.Warn("mover: could not persist retry state", "seq", it.Seq, "err", serr)
	}
	m.opts.Logger.Warn("mover: delivery failed; will retry", "seq", it.Seq, "key", it.Key,
		"attempt", l.attempt, "retry_in", wait, "err", err)
	return wait, true
}

// backoff returns a wait for the given failed attempt: exponential from
// BaseBackoff, capped at MaxBackoff, with full jitter (at least 1ms).
func (m *Mover) backoff(attempt int) time.Duration {
	d := m.opts.BaseBackoff << min(attempt-1, 30)
	if d <= 0 || d > m.opts.MaxBackoff {
		d = m.opts.MaxBackoff
	}
	return max(time.Millisecond, rand.N(d+1))
}

func (m *Mover) deadLetter(it effectqueue.Item, reason string) {
	if err := m.q.DeadLetter(m.applyCtx, it.Seq, reason); err != nil {
		m.opts.Logger.Error("mover: could not dead-letter", "seq", it.Seq, "reason", reason, "err", err)
		return
	}
	m.stats.deadLettered.Add(1)
	m.opts.Logger.Error("mover: dead-lettered", "seq", it.Seq, "key", it.Key, "reason", reason)
	m.advance()
}

// advance wakes WaitDrained.
func (m *Mover) advance() {
	ch := make(chan struct{})
	close(*m.progress.Swap(&ch))
}

// WaitDrained blocks until the queue has no pending entry (every committed
// entry was delivered or dead-lettered), or ctx ends.
func (m *Mover) WaitDrained(ctx context.Context) error {
	for {
		ch := m.progress.Load()
		if m.q.Depth() == 0 {
			return nil
		}
		select {
		case <-*ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ackLoop writes acks in batches, until the acks channel is closed.
func (m *Mover) ackLoop() {
	var batch []uint64
	t := time.NewTimer(m.opts.AckInterval)
	defer t.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		// Acks are written even while stopping: the entries were applied.
		if err := m.q.Ack(context.Background(), batch...); err != nil {
			m.opts.Logger.Error("mover: ack failed; the entries will be applied again after a restart", "n", len(batch), "err", err)
		}
		batch = batch[:0]
		m.advance()
	}
	for {
		select {
		case s, ok := <-m.acks:
			if !ok {
				flush()
				return
			}
			batch = append(batch, s)
			if len(batch) >= 256 {
				flush()
			}
		case <-t.C:
			flush()
			t.Reset(m.opts.AckInterval)
		}
	}
}
