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
	m.mu.Lock()
	l.deadReason, l.deadWrites = "", 0
	m.clearFailingLocked(l)
	m.mu.buffered--
	m.mu.Unlock()
	m.signalSpace()
	m.stats.deadLettered.Add(1)
	sink := ""
	if sk != nil {
		sk.stats.deadLettered.Add(1)
		sink = sk.name
	}
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

// idle reports whether every entry read is delivered and waits for one of
// the n acks gathered: no more will come before new entries are read, so
// waiting for AckInterval would only delay them.
func (m *Mover) idle(n int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.buffered <= n
}

// ackLoop writes acks in batches until the acks channel is closed. A failed
// write is retried with backoff, with the same batch, until it succeeds,
// the queue is closed, or the mover abandons its work; meanwhile workers
// block on the full acks channel, and the dispatcher on MaxBuffered.
func (m *Mover) ackLoop() {
	var batch []uint64
	t := time.NewTimer(m.opts.AckInterval)
	defer t.Stop()
	flush := func() {
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
			if len(batch) >= 256 || len(m.acks) == 0 && m.idle(len(batch)) {
				flush()
			}
		case <-t.C:
			flush()
			t.Reset(m.opts.AckInterval)
		}
	}
}
