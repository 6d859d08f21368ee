package mover

import (
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/zest-stm/zest/effectqueue"
)

// lane holds the pending entries of one ordering key. Its fields are
// guarded by Mover.mu.
type lane struct {
	key     string
	items   []effectqueue.Item
	running bool // a worker serves it
	backoff bool // parked until a retry timer fires
	// attempt counts the attempts of items[0]; loaded says whether its
	// persisted retry state has been read.
	attempt int
	loaded  bool
	// deadReason is set when items[0] must be dead-lettered but the write
	// failed: the lane waits and retries the write before anything else,
	// so that no later entry of the key overtakes it.
	deadReason string
	deadWrites int

	// The lane's health, for Lanes and the logs.
	failing      bool
	failingSince time.Time
	failures     int // failed attempts since failingSince
	lastErr      string
	errClass     string
	nextRetry    time.Time
}

// Lane is a snapshot of one ordering key's lane: entries of the key that
// were read and are waiting or being applied, in order.
type Lane struct {
	// Key is the ordering key.
	Key string
	// Seq and Kind are those of the entry at the head of the lane, the one
	// being applied or retried.
	Seq  uint64
	Kind string
	// Attempts counts the head entry's attempts so far, across restarts.
	Attempts int
	// Failing is set from the lane's first failed attempt until an entry
	// of the lane is delivered or dead-lettered.
	Failing bool
	// ErrorClass and LastError describe the last failure (see ErrorClass).
	ErrorClass string
	LastError  string
	// FailingSince is when the lane started failing; NextRetry when the
	// head entry is tried again. Both are zero when the lane is not failing.
	FailingSince time.Time
	NextRetry    time.Time
}

// Lanes returns the lanes that are being applied or are failing, by key.
// Lanes waiting their turn with no failure are left out.
func (m *Mover) Lanes() []Lane {
	m.mu.Lock()
	var out []Lane
	for _, l := range m.mu.lanes {
		if len(l.items) == 0 || !(l.running || l.failing) {
			continue
		}
		r := Lane{Key: l.key, Seq: l.items[0].Seq, Kind: l.items[0].Kind, Attempts: l.attempt, Failing: l.failing}
		if l.failing {
			r.ErrorClass, r.LastError, r.FailingSince, r.NextRetry = l.errClass, l.lastErr, l.failingSince, l.nextRetry
		}
		out = append(out, r)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Lane) int { return strings.Compare(a.Key, b.Key) })
	return out
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
		m.mu.bufferedBytes += int64(len(it.Payload))
		m.mu.readEntries++
		m.mu.readBytes += int64(len(it.Payload))
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
		for (len(m.mu.ready) == 0 || m.mu.paused) && !m.mu.stopping {
			m.work.Wait()
		}
		if m.mu.stopping {
			m.mu.Unlock()
			return
		}
		l := m.mu.ready[0]
		m.mu.ready = slices.Delete(m.mu.ready, 0, 1)
		l.running = true
		if sk, bs := m.batchFor(l); bs != nil {
			lanes := m.takeReadyLocked(sk, l)
			m.mu.Unlock()
			m.serveBatch(sk, bs, lanes)
			continue
		}
		m.mu.Unlock()
		m.serve(l)
	}
}

// turn is how many entries a worker applies from one lane before it lets
// other lanes have a go.
const turn = 64

// serve applies l's entries in order until the lane is empty, parked for a
// retry, paused, or its turn is over.
func (m *Mover) serve(l *lane) {
	for range turn {
		m.mu.Lock()
		if len(l.items) == 0 || m.mu.stopping || m.mu.paused {
			m.releaseLocked(l)
			m.mu.Unlock()
			return
		}
		it := l.items[0]
		if l.deadReason == "" && m.supersededLocked(l, it) {
			m.popLocked(l)
			m.mu.Unlock()
			m.stats.superseded.Add(1)
			m.ack(it.Seq)
			continue
		}
		m.mu.Unlock()

		if wait, ok := m.apply(l, it); !m.settle(l, wait, ok) {
			return
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
	sk := m.sinkFor(it.Kind)
	if sk == nil {
		return false
	}
	sup, ok := sk.sink.(Superseder)
	if !ok {
		return false
	}
	for _, newer := range l.items[1:] {
		if m.sinkFor(newer.Kind) == sk && supersedes(sup, newer, it) {
			return true
		}
	}
	return false
}

// supersedes calls sup, taking a panic for "no".
func supersedes(sup Superseder, newer, older effectqueue.Item) (yes bool) {
	defer func() {
		if recover() != nil {
			yes = false
		}
	}()
	return sup.Supersedes(newer, older)
}

// popLocked removes l's first entry, which is done. The entry stays
// counted in buffered until its ack or dead letter is written.
// REQUIRES: m.mu held.
func (m *Mover) popLocked(l *lane) {
	was := m.mu.bufferedBytes
	m.mu.bufferedBytes -= int64(len(l.items[0].Payload))
	if was >= m.opts.MaxBufferedBytes && m.mu.bufferedBytes < m.opts.MaxBufferedBytes {
		m.signalSpace() // the dispatcher may read again
	}
	l.items[0] = effectqueue.Item{}
	l.items = l.items[1:]
	l.attempt, l.loaded = 0, false
}

// releaseLocked hands l back after a worker's turn.
// REQUIRES: m.mu held.
func (m *Mover) releaseLocked(l *lane) {
	l.running = false
	switch {
	case len(l.items) == 0:
		if l.failing {
			l.failing = false
			m.mu.failing--
		}
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
	sk := m.sinkFor(it.Kind)
	m.mu.Lock()
	reason := l.deadReason
	m.mu.Unlock()
	if reason != "" {
		return m.deadLetter(l, it, reason, sk)
	}
	if sk == nil {
		return m.deadLetter(l, it, fmt.Sprintf("no sink for kind %q", it.Kind), nil)
	}
	d := m.prepare(l, it)
	m.stats.inFlight.Add(1)
	err := m.callSink(sk, d)
	m.stats.inFlight.Add(-1)
	return m.finish(l, sk, d, err)
}

// prepare counts an attempt at it, the head of l, and returns its
// delivery.
func (m *Mover) prepare(l *lane, it effectqueue.Item) Delivery {
	m.mu.Lock()
	needLoad := !l.loaded
	m.mu.Unlock()
	prev := 0
	if needLoad && it.Seq <= m.replayUpTo {
		if rs, err := m.q.RetryStateOf(it.Seq); err == nil {
			prev = rs.Attempts
		}
	}
	m.mu.Lock()
	if needLoad {
		l.loaded, l.attempt = true, prev
	}
	l.attempt++
	n := l.attempt
	m.mu.Unlock()
	return Delivery{Item: it, Writer: m.writer, Attempt: n, MayHaveLanded: n > 1 || it.Seq <= m.replayUpTo}
}

// finish records the outcome err of attempt d at the head of l (see apply
// for what it returns).
func (m *Mover) finish(l *lane, sk *sinkRef, d Delivery, err error) (wait time.Duration, ok bool) {
	ctx := m.applyCtx
	it, n := d.Item, d.Attempt
	if err == nil {
		lat := time.Since(it.Committed)
		m.stats.delivered.Add(1)
		sk.stats.delivered.Add(1)
		sk.stats.latency.observe(lat)
		m.stats.latency(lat)
		m.recovered(l)
		m.ack(it.Seq)
		return 0, true
	}
	if ctx.Err() != nil {
		m.mu.Lock()
		l.attempt-- // not the sink's fault: the next run tries again
		m.mu.Unlock()
		return 0, false
	}
	if IsPermanent(err) {
		return m.deadLetter(l, it, err.Error(), sk)
	}
	if n >= m.opts.MaxAttempts {
		return m.deadLetter(l, it, fmt.Sprintf("gave up after %d attempts: %v", n, err), sk)
	}
	m.stats.retries.Add(1)
	sk.stats.retries.Add(1)
	wait = m.backoff(n)
	m.failed(l, it, n, err, wait)
	if !persistAttempt(n, wait) {
		return wait, true
	}
	rs := effectqueue.RetryState{Attempts: n, LastError: err.Error(), NextAt: time.Now().Add(wait)}
	if serr := m.q.SetRetryState(ctx, it.Seq, rs); serr != nil {
		m.logs.log(levelWarn, "mover: could not persist retry state; a restart may count this entry's attempts from fewer",
			"seq", it.Seq, "err", serr)
	}
	return wait, true
}

// persistAttempt says whether the retry state after failed attempt n is
// written to the queue: at attempts 1, 2, 4, 8, ... and whenever the wait
// is a second or more. Each write is an fsync, and an outage fails many
// attempts a second; the count only bounds dead-lettering, so after a
// crash it may restart from a lower power of two.
func persistAttempt(n int, wait time.Duration) bool {
	return n&(n-1) == 0 || wait >= time.Second
}

// callSink calls the sink, taking a panic for a retryable error of class
// "panic" (logged with its stack).
func (m *Mover) callSink(sk *sinkRef, d Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			m.logs.log(levelError, "mover: sink panicked", "sink", sk.name, "seq", d.Seq, "panic", r, "stack", string(debug.Stack()))
			err = WithClass("panic", fmt.Errorf("mover: sink %q panicked: %v", sk.name, r))
		}
	}()
	return sk.sink.Apply(m.applyCtx, d)
}

// failed records a failed attempt that will be retried. A lane's first
// failure is a state change, logged at Warn; later ones go to Debug.
func (m *Mover) failed(l *lane, it effectqueue.Item, attempt int, err error, wait time.Duration) {
	class := ErrorClass(err)
	now := time.Now()
	m.mu.Lock()
	first := !l.failing
	if first {
		l.failing, l.failingSince, l.failures = true, now, 0
		m.mu.failing++
	}
	l.failures++
	l.lastErr, l.errClass, l.nextRetry = err.Error(), class, now.Add(wait)
	m.mu.Unlock()
	if first {
		m.logs.log(levelWarn, "mover: lane failing; retrying with backoff", "key", it.Key, "seq", it.Seq,
			"class", class, "err", err, "attempt", attempt, "next_retry_in", wait)
		return
	}
	m.opts.Logger.Debug("mover: delivery failed; will retry", "key", it.Key, "seq", it.Seq,
		"class", class, "err", err, "attempt", attempt, "next_retry_in", wait)
}

// recovered records a delivery on l; if l was failing, that is a state
// change, logged at Info with how long it failed and how many attempts.
func (m *Mover) recovered(l *lane) {
	m.mu.Lock()
	if !l.failing {
		m.mu.Unlock()
		return
	}
	since, n := l.failingSince, l.failures
	m.clearFailingLocked(l)
	m.mu.Unlock()
	m.logs.log(levelInfo, "mover: lane recovered", "key", l.key, "failed_for", time.Since(since).Round(time.Millisecond),
		"failed_attempts", n)
}

// clearFailingLocked marks l healthy.
// REQUIRES: m.mu held.
func (m *Mover) clearFailingLocked(l *lane) {
	if l.failing {
		m.mu.failing--
	}
	l.failing, l.failingSince, l.failures = false, time.Time{}, 0
	l.lastErr, l.errClass, l.nextRetry = "", "", time.Time{}
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
