package effectqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/stm"
)

// consumer serializes the methods that read and then change the queue's
// keys (Ack, DeadLetter, Discard, SetRetryState), so that the cursor moves
// consistently and no two of them race on a key. (The writer only adds keys
// that none of them reads before they are committed.)
type consumer struct {
	mu sync.Mutex
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
	var removed int64
	var newCursor uint64
	var oldest time.Time
	moved := false
	err := q.update(ctx, func(txn *badger.Txn) error {
		removed, newCursor, oldest, moved = 0, cursor, time.Time{}, false
		for _, s := range seqs {
			key := seqKey(q.k.entry, s)
			item, err := txn.Get(key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				if reason != nil {
					return fmt.Errorf("%w: %d is not pending", ErrNotFound, s)
				}
				continue
			}
			if err != nil {
				return err
			}
			if reason != nil {
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
			if err := txn.Delete(seqKey(q.k.retry, s)); err != nil {
				return err
			}
			removed++
			moved = moved || s == cursor
		}
		if !moved {
			return nil
		}
		var err error
		newCursor, oldest, err = q.firstPending(txn, cursor, head)
		if err != nil {
			return err
		}
		return txn.Set(q.k.cursor, u64b(newCursor))
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("effectqueue: remove: %w", err)
	}
	q.acct.Lock()
	defer q.acct.Unlock()
	q.pending.Add(-removed)
	if !moved {
		return nil
	}
	if oldest.IsZero() && q.head.Load() > head {
		// Every entry up to head is gone; entries after it committed
		// meanwhile, and the first of them is the oldest pending one.
		t, err := q.commitTime(head + 1)
		if err != nil {
			// Keep the previous (older) time: an age too high rather than 0.
			q.opts.Logger.Warn("effectqueue: could not read the oldest pending entry's commit time", "seq", head+1, "err", err)
			q.cursor.Store(newCursor)
			return nil
		}
		oldest = t
	}
	q.cursor.Store(newCursor)
	q.oldest.Store(unixNano(oldest))
	return nil
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

// firstPending finds the first pending entry at or after from, up to head.
// It returns head+1 (and a zero time) if there is none.
func (q *Queue) firstPending(txn *badger.Txn, from, head uint64) (uint64, time.Time, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: q.k.entry})
	defer it.Close()
	it.Seek(seqKey(q.k.entry, from))
	if !it.Valid() {
		return head + 1, time.Time{}, nil
	}
	seq := seqOf(q.k.entry, it.Item().Key())
	if seq > head {
		return head + 1, time.Time{}, nil
	}
	var t time.Time
	err := it.Item().Value(func(b []byte) error {
		r, err := decode(seq, b)
		t = time.Unix(0, r.Time)
		return err
	})
	return seq, t, err
}

// update runs fn in a Badger transaction, retrying on Badger's conflict
// error (a consumer transaction can race with the writer's on a Badger that
// detects conflicts) until ctx ends.
func (q *Queue) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
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
		body, fields := encodeBody(&e)
		p.entries = append(p.entries, pendingEntry{body: body, fields: fields, opID: r.OpID, deadLetter: seq})
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
	q.cons.mu.Lock()
	defer q.cons.mu.Unlock()
	return q.update(ctx, func(txn *badger.Txn) error {
		key := seqKey(q.k.dead, seq)
		if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: %d is not a dead letter", ErrNotFound, seq)
		} else if err != nil {
			return err
		}
		return txn.Delete(key)
	})
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
	return q.update(ctx, func(txn *badger.Txn) error {
		if _, err := txn.Get(seqKey(q.k.entry, seq)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return fmt.Errorf("%w: %d is not pending", ErrNotFound, seq)
			}
			return err
		}
		return txn.Set(seqKey(q.k.retry, seq), b)
	})
}

// RetryStateOf returns the retry state of entry seq (zero if none).
func (q *Queue) RetryStateOf(seq uint64) (RetryState, error) {
	if !q.enter() {
		return RetryState{}, ErrClosed
	}
	defer q.leave()
	var s RetryState
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
	return q.update(ctx, func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte{}, q.k.consumer...), name...), u64b(v))
	})
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
