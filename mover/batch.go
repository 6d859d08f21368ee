package mover

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"time"
)

// BatchSink is a Sink that can apply the head entries of several ordering
// keys at once, so that their round trips overlap (natssink pipelines the
// publishes). The mover hands a worker's batch to ApplyBatch: at most one
// entry per ordering key, so per-key order is kept exactly as with Apply,
// and the outcome of each delivery is handled as if Apply had returned it.
//
// ApplyBatch is called concurrently for different batches, never with two
// entries of one key in flight.
type BatchSink interface {
	Sink
	// ApplyBatch applies ds, each of a different ordering key, and returns
	// one error per delivery, in the order of ds (nil: confirmed).
	ApplyBatch(ctx context.Context, ds []Delivery) []error
}

// scanReady bounds how many ready lanes a worker looks through to fill a
// batch.
const scanReady = 256

// batchFor returns the BatchSink that serves l's head entry, with its
// sinkRef, or nil if l is served one entry at a time.
// REQUIRES: m.mu held.
func (m *Mover) batchFor(l *lane) (*sinkRef, BatchSink) {
	if m.opts.BatchSize < 2 || len(l.items) == 0 || l.deadReason != "" {
		return nil, nil
	}
	sk := m.sinkFor(l.items[0].Kind)
	if sk == nil {
		return nil, nil
	}
	bs, ok := sk.sink.(BatchSink)
	if !ok {
		return nil, nil
	}
	return sk, bs
}

// takeReadyLocked takes from the ready lanes, besides first (already
// taken), those whose head entry goes to sk, up to Options.BatchSize in
// all, and marks them running.
// REQUIRES: m.mu held.
func (m *Mover) takeReadyLocked(sk *sinkRef, first *lane) []*lane {
	batch := []*lane{first}
	kept := m.mu.ready[:0]
	for i, l := range m.mu.ready {
		if len(batch) < m.opts.BatchSize && i < scanReady {
			if s, _ := m.batchFor(l); s == sk {
				l.running = true
				batch = append(batch, l)
				continue
			}
		}
		kept = append(kept, l)
	}
	clear(m.mu.ready[len(kept):])
	m.mu.ready = kept
	return batch
}

// serveBatch applies the entries of lanes, one head entry per lane at a
// time, the heads of all lanes in one ApplyBatch call, until each lane is
// empty, parked for a retry, paused, or its turn is over. An entry that
// must be dead-lettered, or whose kind another sink serves, is applied
// alone, in its lane's order.
func (m *Mover) serveBatch(sk *sinkRef, bs BatchSink, lanes []*lane) {
	var ds []Delivery
	var ls []*lane
	for range turn {
		if len(lanes) == 0 {
			return
		}
		ds, ls = ds[:0], ls[:0]
		keep := lanes[:0]
		for _, l := range lanes {
			m.mu.Lock()
			if len(l.items) == 0 || m.mu.stopping || m.mu.paused {
				m.releaseLocked(l)
				m.mu.Unlock()
				continue
			}
			it := l.items[0]
			if l.deadReason == "" && m.supersededLocked(l, it) {
				m.popLocked(l)
				m.mu.Unlock()
				m.stats.superseded.Add(1)
				m.ack(it.Seq)
				keep = append(keep, l)
				continue
			}
			single := l.deadReason != "" || m.sinkFor(it.Kind) != sk
			m.mu.Unlock()
			if single {
				if wait, ok := m.apply(l, it); m.settle(l, wait, ok) {
					keep = append(keep, l)
				}
				continue
			}
			ds = append(ds, m.prepare(l, it))
			ls = append(ls, l)
		}
		if len(ds) > 0 {
			m.stats.inFlight.Add(int64(len(ds)))
			errs := m.callBatch(sk, bs, ds)
			m.stats.inFlight.Add(-int64(len(ds)))
			for i, l := range ls {
				if wait, ok := m.finish(l, sk, ds[i], errs[i]); m.settle(l, wait, ok) {
					keep = append(keep, l)
				}
			}
		}
		lanes = keep
	}
	m.mu.Lock()
	for _, l := range lanes {
		m.releaseLocked(l)
	}
	m.mu.Unlock()
}

// settle acts on the outcome of an attempt at l's head, as serve does: it
// reports whether l stays in the worker's hands for its next entry.
func (m *Mover) settle(l *lane, wait time.Duration, ok bool) bool {
	switch {
	case !ok: // abandoned at shutdown
		m.mu.Lock()
		m.releaseLocked(l)
		m.mu.Unlock()
		return false
	case wait > 0:
		m.park(l, wait)
		return false
	}
	m.mu.Lock()
	m.popLocked(l)
	m.mu.Unlock()
	return true
}

// callBatch calls the sink's ApplyBatch. A panic, or a result of the wrong
// length, makes every delivery of the batch a retryable failure (class
// "panic" for a panic).
func (m *Mover) callBatch(sk *sinkRef, bs BatchSink, ds []Delivery) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			m.logs.log(levelError, "mover: sink panicked", "sink", sk.name, "seq", ds[0].Seq, "batch", len(ds), "panic", r, "stack", string(debug.Stack()))
			err := WithClass("panic", fmt.Errorf("mover: sink %q panicked: %v", sk.name, r))
			errs = slices.Repeat([]error{err}, len(ds))
		}
	}()
	errs = bs.ApplyBatch(m.applyCtx, slices.Clone(ds))
	if len(errs) != len(ds) {
		err := fmt.Errorf("mover: sink %q returned %d results for a batch of %d", sk.name, len(errs), len(ds))
		errs = slices.Repeat([]error{err}, len(ds))
	}
	return errs
}
