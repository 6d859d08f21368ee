package mover

import (
	"errors"
	"fmt"
	"time"

	"github.com/zest-stm/zest/effectqueue"
)

// The mover's own state writes to the queue: acks and dead letters. A
// failed write is retried with backoff and never dropped. An entry whose
// dead letter cannot be written holds its lane (no later entry of the key
// overtakes it); delivered entries whose acks cannot be written stay
// counted in Options.MaxBuffered, so the mover stops reading new entries
// until the acks are written.

// deadLetter sets it aside with reason. If the write fails, the lane keeps
// it at its head and retries the write after a backoff; it returns
// ok == false if the mover is abandoning its work.
func (m *Mover) deadLetter(l *lane, it effectqueue.Item, reason string, sk *sinkRef) (wait time.Duration, ok bool) {
	ctx := m.applyCtx
	err := m.q.DeadLetter(ctx, it.Seq, reason)
	if err != nil && !errors.Is(err, effectqueue.ErrNotFound) { // not found: an earlier write landed
		if ctx.Err() != nil {
			return 0, false
		}
		m.stats.stateRetries.Add(1)
		m.mu.Lock()
		l.deadReason = reason
		l.deadWrites++
		n, attempt := l.deadWrites, l.attempt
		m.mu.Unlock()
		wait = m.backoff(n)
		m.failed(l, it, attempt, WithClass("state", fmt.Errorf("mover: write dead letter: %w", err)), wait)
		return wait, true
	}
	// Counted before the entry leaves buffered, so that a WaitDrained that
	// returns sees it in Stats.
	m.stats.deadLettered.Add(1)
	sink := ""
	if sk != nil {
		sk.stats.deadLettered.Add(1)
		sink = sk.name
	}
	m.mu.Lock()
	l.deadReason, l.deadWrites = "", 0
	m.clearFailingLocked(l)
	m.mu.buffered--
	m.mu.Unlock()
	m.signalSpace()
	m.logs.log(levelError, "mover: dead-lettered", "seq", it.Seq, "key", it.Key, "sink", sink, "reason", reason)
	m.advance()
	return 0, true
}

func (m *Mover) signalSpace() {
	select {
	case m.space <- struct{}{}:
	default:
	}
}

// ackFlushAt is how many acks wake the ack writer before AckInterval.
const ackFlushAt = 256

// ack hands entry seq, done, to the ack writer, and wakes it if a write is
// due: ackFlushAt acks are waiting, or every entry read is done (no more
// acks can come before new entries are read, so waiting would only delay
// them).
func (m *Mover) ack(seq uint64) {
	m.acks.Lock()
	m.acks.seqs = append(m.acks.seqs, seq)
	n := len(m.acks.seqs)
	m.acks.Unlock()
	if n >= ackFlushAt || m.idle(n) {
		m.wakeAcker()
	}
}

func (m *Mover) wakeAcker() {
	select {
	case m.ackWake <- struct{}{}:
	default:
	}
}

// idle reports whether every entry read is done and waits for one of the n
// acks gathered.
func (m *Mover) idle(n int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.buffered <= n
}

// ackLoop writes acks in batches, when woken (see ack) or every
// AckInterval, until the workers have stopped and the last acks are
// written. A failed write is retried with backoff, with the same batch,
// until it succeeds, the queue is closed, or the mover abandons its work;
// meanwhile the entries stay counted in Options.MaxBuffered, so the
// dispatcher stops reading.
func (m *Mover) ackLoop() {
	t := time.NewTimer(m.opts.AckInterval)
	defer t.Stop()
	var batch, spare []uint64
	for {
		select {
		case <-m.ackWake:
		case <-t.C:
			t.Reset(m.opts.AckInterval)
		}
		m.acks.Lock()
		batch, m.acks.seqs, spare = m.acks.seqs, spare[:0], nil
		closed := m.acks.closed
		m.acks.Unlock()
		m.writeAcks(batch)
		if closed {
			return // the workers had stopped: batch held the last acks
		}
		spare = batch
		m.acks.Lock()
		n := len(m.acks.seqs)
		m.acks.Unlock()
		if n > 0 && (n >= ackFlushAt || m.idle(n)) {
			m.wakeAcker() // became due while this write was under way
		}
	}
}

// writeAcks writes batch, retrying as ackLoop says.
func (m *Mover) writeAcks(batch []uint64) {
	if len(batch) == 0 {
		return
	}
	for attempt := 1; ; attempt++ {
		// Acks are written even while stopping: the entries were applied.
		err := m.q.Ack(m.applyCtx, batch...)
		if err == nil {
			break
		}
		if errors.Is(err, effectqueue.ErrClosed) || m.applyCtx.Err() != nil {
			m.logs.log(levelError, "mover: acks not written; the entries will be applied again, checked, after a restart",
				"n", len(batch), "err", err)
			break
		}
		m.stats.stateRetries.Add(1)
		wait := m.backoff(attempt)
		m.logs.log(levelWarn, "mover: ack write failed; retrying", "n", len(batch), "attempt", attempt, "next_retry_in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-m.applyCtx.Done():
		}
	}
	m.mu.Lock()
	m.mu.buffered -= len(batch)
	m.mu.Unlock()
	m.signalSpace()
	m.advance()
}
