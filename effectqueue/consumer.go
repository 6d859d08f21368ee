package effectqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/stm"
)

// consumer serializes the methods that read and then change the queue's
// keys (Ack, DeadLetter, Discard, SetRetryState), so that the cursor moves
// consistently and no two of them race on a key. (The writer only adds keys
// that none of them reads before they are committed.) It also holds what
// lets them decide without reading Badger which entries are pending and
// which have a retry state.
type consumer struct {
	mu sync.Mutex
	// gone holds the entries above the cursor, up to the head, that were
	// acked or dead-lettered (out of order). An entry is pending if and
	// only if it is at or above the cursor, at or below the head, and not
	// in gone.
	gone seqSet
	// retries holds the pending entries that have a retry state.
	retries map[uint64]struct{}
}

// pendingLocked reports whether entry seq is pending.
// REQUIRES: q.cons.mu held.
func (q *Queue) pendingLocked(seq uint64) bool {
	return seq >= q.cursor.Load() && seq <= q.head.Load() && !q.cons.gone.has(seq)
}

// Read returns up to limit committed entries with sequence numbers after
// after, in sequence order, skipping those already acked or dead-lettered.
// It does not wait: use Wait or Notify for that. Reads seek to their start,
// so a long acked prefix costs nothing.
func (q *Queue) Read(ctx context.Context, after uint64, limit int) ([]Item, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("effectqueue: read: limit is %d, must be positive", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !q.enter() {
		return nil, ErrClosed
	}
	defer q.leave()
	head := q.head.Load()
	start := max(after+1, q.cursor.Load())
	var items []Item
	err := q.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.k.entry, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(seqKey(q.k.entry, start)); it.Valid() && len(items) < limit; it.Next() {
			seq := seqOf(q.k.entry, it.Item().Key())
			if seq > head {
				break
			}
			if len(items)%256 == 255 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			err := it.Item().Value(func(b []byte) error {
				r, err := decode(seq, b)
				if err != nil {
					return err
				}
				items = append(items, r.item(seq))
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("effectqueue: read: %w", err)
	}
	return items, nil
}

// Ack removes delivered entries. It is idempotent: a sequence number that is
// no longer pending is skipped. Acking an entry that is not yet committed is
// an error. Deletions are written in batches of at most Options.AckBatch keys.
func (q *Queue) Ack(ctx context.Context, seqs ...uint64) error {
	for len(seqs) > 0 {
		n := min(len(seqs), q.opts.AckBatch)
		if err := q.remove(ctx, seqs[:n], nil); err != nil {
			return err
		}
		seqs = seqs[n:]
	}
	return nil
}

// DeadLetter sets the pending entry seq aside with reason, until an
// operator replays or discards it.
func (q *Queue) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	return q.remove(ctx, []uint64{seq}, &reason)
}

// remove acks seqs, or dead-letters them if reason is set, in one Badger
// transaction, and moves the cursor.
//
// Which entries are pending, and where the cursor moves, is known in memory
// (consumer.gone), so an Ack writes blind deletions: it reads only the
// commit time of the entry the cursor moves to. A dead letter reads the
// entry, to keep it. Acks are not synced to disk (see Queue.wmu); dead
// letters are.
//
// The backlog (pending, oldest, cursor) stays exact while the writer adds
// entries: remove reads the head under cons.mu, so that no entry above it
// was removed yet (removals are serialized by cons.mu and each one only
// removes entries up to the head it read); when it removes every entry up
// to its head, the oldest pending entry is the first one after it.
func (q *Queue) remove(ctx context.Context, seqs []uint64, reason *string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !q.enter() {
		return ErrClosed
	}
	defer q.leave()
	q.cons.mu.Lock()
	defer q.cons.mu.Unlock()
	head := q.head.Load()
	for _, s := range seqs {
		if s == 0 || s > head {
			return fmt.Errorf("effectqueue: sequence number %d is not committed (head is %d)", s, head)
		}
	}
	cursor := q.cursor.Load()
	todo := make([]uint64, 0, len(seqs))
	for _, s := range seqs {
		if s >= cursor && !q.cons.gone.has(s) {
			todo = append(todo, s)
		}
	}
	slices.Sort(todo)
	todo = slices.Compact(todo)
	if len(todo) == 0 {
		if reason != nil {
			return fmt.Errorf("%w: %d is not pending", ErrNotFound, seqs[0])
		}
		return nil
	}
	// The cursor moves past the entries removed now and those removed
	// before, up to the first pending one (or head+1).
	newCursor := cursor
	for j := 0; ; {
		newCursor = q.cons.gone.next(newCursor)
		for j < len(todo) && todo[j] < newCursor {
			j++
		}
		if j == len(todo) || todo[j] != newCursor {
			break
		}
		newCursor++
	}
	write := q.update
	if reason != nil {
		write = q.updateDurably
	}
	written, err := write(ctx, func(txn *badger.Txn) error {
		for _, s := range todo {
			key := seqKey(q.k.entry, s)
			if reason != nil {
				item, err := txn.Get(key)
				if errors.Is(err, badger.ErrKeyNotFound) {
					return fmt.Errorf("%w: entry %d is pending but not stored", ErrCorrupt, s)
				}
				if err != nil {
					return err
				}
				b, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				r, err := decode(s, b)
				if err != nil {
					return err
				}
				r.Reason, r.DeadAt = *reason, time.Now().UnixNano()
				v, err := encode(&r)
				if err != nil {
					return err
				}
				if err := txn.Set(seqKey(q.k.dead, s), v); err != nil {
					return err
				}
			}
			if err := txn.Delete(key); err != nil {
				return err
			}
			if _, ok := q.cons.retries[s]; ok {
				if err := txn.Delete(seqKey(q.k.retry, s)); err != nil {
					return err
				}
			}
		}
		if newCursor == cursor {
			return nil
		}
		return txn.Set(q.k.cursor, u64b(newCursor))
	})
	if written {
		q.removed(todo, cursor, newCursor, reason != nil)
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("effectqueue: remove: %w", err)
	}
	return nil
}

// removed records in memory that todo (sorted, pending) were removed and
// the cursor moved from cursor to newCursor.
// REQUIRES: q.cons.mu held.
func (q *Queue) removed(todo []uint64, cursor, newCursor uint64, dead bool) {
	for _, s := range todo {
		if s > newCursor {
			q.cons.gone.add(s)
		}
		delete(q.cons.retries, s)
	}
	if dead {
		q.dead.Add(int64(len(todo)))
	}
	q.acct.Lock()
	defer q.acct.Unlock()
	q.pending.Add(-int64(len(todo)))
	if newCursor == cursor {
		return
	}
	q.cons.gone.dropBelow(newCursor)
	q.cursor.Store(newCursor)
	if newCursor > q.head.Load() {
		// Nothing is pending (committed() sets oldest for what comes next).
		q.oldest.Store(0)
		return
	}
	// newCursor is pending: it is the oldest.
	t, err := q.commitTime(newCursor)
	if err != nil {
		// Keep the previous (older) time: an age too high rather than 0.
		q.opts.Logger.Warn("effectqueue: could not read the oldest pending entry's commit time", "seq", newCursor, "err", err)
		return
	}
	q.oldest.Store(unixNano(t))
}

// unixNano returns t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// commitTime returns the commit time of pending entry seq.
func (q *Queue) commitTime(seq uint64) (time.Time, error) {
	var t time.Time
	err := q.bdb.View(func(txn *badger.Txn) error {
		v, err := getValue(txn, seqKey(q.k.entry, seq))
		if err != nil {
			return err
		}
		if v == nil {
			return fmt.Errorf("%w: %d is not pending", ErrNotFound, seq)
		}
		r, err := decode(seq, v)
		t = time.Unix(0, r.Time)
		return err
	})
	return t, err
}

// update runs fn in a Badger transaction that need not be durable (acks;
// see Queue.wmu). It reports whether the write landed.
func (q *Queue) update(ctx context.Context, fn func(txn *badger.Txn) error) (bool, error) {
	q.wmu.RLock()
	defer q.wmu.RUnlock()
	err := q.retryConflicts(ctx, fn)
	return err == nil, err
}

// updateDurably runs fn in a Badger transaction and syncs it to disk. It
// reports whether the write landed (in memory; the error says whether the
// sync failed).
func (q *Queue) updateDurably(ctx context.Context, fn func(txn *badger.Txn) error) (bool, error) {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if err := q.retryConflicts(ctx, fn); err != nil {
		return false, err
	}
	return true, q.syncLocked()
}

// syncLocked makes the queue's writes so far durable, unless Badger syncs
// every write itself.
// REQUIRES: q.wmu held exclusively.
func (q *Queue) syncLocked() error {
	if q.syncWrites {
		return nil
	}
	if err := q.bdb.Sync(); err != nil {
		return fmt.Errorf("effectqueue: sync: %w", err)
	}
	return nil
}

// retryConflicts runs fn in a Badger transaction, retrying on Badger's
// conflict error (a consumer transaction can race with the writer's on a
// Badger that detects conflicts) until ctx ends.
func (q *Queue) retryConflicts(ctx context.Context, fn func(txn *badger.Txn) error) error {
	for {
		err := q.bdb.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Depth returns the number of committed entries not yet acked or
// dead-lettered. It takes no lock: metrics may call it at any rate.
func (q *Queue) Depth() int64 { return q.pending.Load() }

// OldestAge returns how long the oldest pending entry has waited since its
// commit, or 0 if none is pending. It takes no lock.
func (q *Queue) OldestAge() time.Duration {
	t := q.oldest.Load()
	if t == 0 {
		return 0
	}
	return max(time.Since(time.Unix(0, t)), 1)
}

// DeadLetters returns up to limit dead letters with sequence numbers after
// after, in order.
func (q *Queue) DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	if !q.enter() {
		return nil, ErrClosed
	}
	defer q.leave()
	var out []DeadLetter
	err := q.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.k.dead, PrefetchValues: true})
		defer it.Close()
		for it.Seek(seqKey(q.k.dead, after+1)); it.Valid() && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			seq := seqOf(q.k.dead, it.Item().Key())
			err := it.Item().Value(func(b []byte) error {
				r, err := decode(seq, b)
				if err != nil {
					return err
				}
				out = append(out, DeadLetter{Item: r.item(seq), Reason: r.Reason, At: time.Unix(0, r.DeadAt)})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("effectqueue: dead letters: %w", err)
	}
	return out, nil
}

func (q *Queue) deadLetter(seq uint64) (record, error) {
	if !q.enter() {
		return record{}, ErrClosed
	}
	defer q.leave()
	var r record
	err := q.bdb.View(func(txn *badger.Txn) error {
		v, err := getValue(txn, seqKey(q.k.dead, seq))
		if err != nil {
			return err
		}
		if v == nil {
			return fmt.Errorf("%w: %d is not a dead letter", ErrNotFound, seq)
		}
		r, err = decode(seq, v)
		return err
	})
	return r, err
}

// Replay puts dead letter seq back into the queue, at its tail: it gets a
// new sequence number and keeps its operation id, and the dead letter is
// removed in the same atomic write. It runs as a transaction of the DB.
//
// The entry is delivered after everything committed before the replay,
// including newer entries of the same ordering key. The operator decides
// whether the old operation is still wanted.
func (q *Queue) Replay(ctx context.Context, seq uint64) (newSeq uint64, err error) {
	q.replayMu.Lock()
	defer q.replayMu.Unlock()
	r, err := q.deadLetter(seq)
	if err != nil {
		return 0, err
	}
	var p *participant
	err = q.db.Run(ctx, func(tx *stm.Tx) error {
		p = q.local(tx)
		e := Entry{Kind: r.Kind, Key: r.Key, Payload: r.Payload, Meta: r.Meta}
		buf, room, fields := q.encodeEntry(&e, r.OpID)
		p.entries = append(p.entries, pendingEntry{buf: buf, room: room, fields: fields, opID: r.OpID, deadLetter: seq})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("effectqueue: replay %d: %w", seq, err)
	}
	// In Async mode the dead letter is removed when the write lands: wait
	// for it, so that a second Replay cannot enqueue the entry twice.
	newSeq = p.first
	return newSeq, q.waitHead(ctx, newSeq)
}

// waitHead blocks until the head reaches seq, the queue closes, or ctx ends.
func (q *Queue) waitHead(ctx context.Context, seq uint64) error {
	for {
		ch := q.Notify()
		if q.head.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-q.stop:
			if q.head.Load() >= seq {
				return nil
			}
			return ErrClosed
		}
	}
}

// Discard deletes dead letter seq for good.
func (q *Queue) Discard(ctx context.Context, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !q.enter() {
		return ErrClosed
	}
	defer q.leave()
	q.replayMu.Lock() // a Replay of seq removes it too: count it once
	defer q.replayMu.Unlock()
	q.cons.mu.Lock()
	defer q.cons.mu.Unlock()
	written, err := q.updateDurably(ctx, func(txn *badger.Txn) error {
		key := seqKey(q.k.dead, seq)
		if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: %d is not a dead letter", ErrNotFound, seq)
		} else if err != nil {
			return err
		}
		return txn.Delete(key)
	})
	if written {
		q.dead.Add(-1)
	}
	return err
}

// RetryState is a consumer's record of failed deliveries of one entry,
// kept with the entry so that a restart does not reset it.
type RetryState struct {
	Attempts  int       `msgpack:"a"`
	LastError string    `msgpack:"e"`
	NextAt    time.Time `msgpack:"n"`
}

// SetRetryState persists the retry state of pending entry seq. It is
// removed with the entry by Ack or DeadLetter.
func (q *Queue) SetRetryState(ctx context.Context, seq uint64, s RetryState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := msgpack.Marshal(&s)
	if err != nil {
		return fmt.Errorf("effectqueue: retry state: %w", err)
	}
	if !q.enter() {
		return ErrClosed
	}
	defer q.leave()
	q.cons.mu.Lock()
	defer q.cons.mu.Unlock()
	if !q.pendingLocked(seq) {
		return fmt.Errorf("%w: %d is not pending", ErrNotFound, seq)
	}
	written, err := q.updateDurably(ctx, func(txn *badger.Txn) error {
		return txn.Set(seqKey(q.k.retry, seq), b)
	})
	if written {
		q.cons.retries[seq] = struct{}{}
	}
	return err
}

// RetryStateOf returns the retry state of entry seq (zero if none).
func (q *Queue) RetryStateOf(seq uint64) (RetryState, error) {
	if !q.enter() {
		return RetryState{}, ErrClosed
	}
	defer q.leave()
	q.cons.mu.Lock()
	_, ok := q.cons.retries[seq]
	q.cons.mu.Unlock()
	var s RetryState
	if !ok {
		return s, nil
	}
	err := q.bdb.View(func(txn *badger.Txn) error {
		v, err := getValue(txn, seqKey(q.k.retry, seq))
		if err != nil || v == nil {
			return err
		}
		return msgpack.Unmarshal(v, &s)
	})
	return s, err
}

// SetConsumerState persists a named number for a consumer of the queue
// (the mover keeps the highest sequence number it may have attempted).
func (q *Queue) SetConsumerState(ctx context.Context, name string, v uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == "" {
		return errors.New("effectqueue: consumer state needs a name")
	}
	if !q.enter() {
		return ErrClosed
	}
	defer q.leave()
	_, err := q.updateDurably(ctx, func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte{}, q.k.consumer...), name...), u64b(v))
	})
	return err
}

// ConsumerState returns the number SetConsumerState stored under name (0 if
// none).
func (q *Queue) ConsumerState(name string) (uint64, error) {
	if !q.enter() {
		return 0, ErrClosed
	}
	defer q.leave()
	var v uint64
	err := q.bdb.View(func(txn *badger.Txn) error {
		b, err := getValue(txn, append(append([]byte{}, q.k.consumer...), name...))
		if err == nil && len(b) == 8 {
			v = u64(b)
		}
		return err
	})
	return v, err
}
