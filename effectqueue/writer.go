package effectqueue

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/stm"
)

// writer is the queue's seam.Log: it writes committed transactions' records
// to Badger in commit order, grouping every commit that arrives while a
// write is under way into the next write (group commit: one Badger write and
// one fsync for many transactions).
//
// Invariants:
//   - Commits are written in the order Append received them, which is the
//     commit order; each commit's records go into one Badger transaction, so
//     a crash leaves all of them or none.
//   - Every Badger transaction that holds entries also sets m/next past its
//     highest entry, so numbering continues after a restart.
//   - The head that readers see advances only after the write (and fsync)
//     returned, so readers see a gap-free prefix.
//   - After a failed write nothing more is written: the DB is stopped
//     (stmx.Stop), Append refuses every later commit with an error wrapping
//     stm.ErrStopped and the cause, and every commit already queued gets the
//     write error (Run makes it stm.ErrOutcomeUnknown). So every commit the
//     failure catches gets an error of the engine, with the storage's error
//     inside, never the storage's error alone.
//   - In Async mode a failed write is counted (Stats.AsyncLost), logged, and
//     stops the DB with the cause: the next Run returns it.
type writer struct {
	q    *Queue
	wake chan struct{}
	done chan struct{}

	mu struct {
		sync.Mutex
		queue []*pending
		// want is how many queued commits wake the writer: Append signals
		// only when the queue reaches it, so that a writer gathering a
		// group is not woken (and does not take a core from the
		// committers) once per arriving commit. 1 when the writer waits
		// for any commit.
		want int
		// maxWant is the largest want so far, for tests: it must never
		// exceed the number of committers.
		maxWant int
		closed  bool
		// err is the write error that stopped the writer, wrapped in
		// stm.ErrStopped: what Append returns from then on.
		err error
	}
}

// pending is one commit waiting to be written. It is the seam.Waiter that
// Run waits on. The writer calls finish exactly once; err is written before
// and read after (the WaitGroup orders them), so it needs no lock.
type pending struct {
	c    *seam.Commit
	done sync.WaitGroup
	err  error
}

// Wait returns once the commit is written (and reported durable), or its
// write failed. The writer always ends it: the write lands, fails, or Close
// drains it.
func (p *pending) Wait() error {
	p.done.Wait()
	return p.err
}

// finish ends the wait with err.
func (p *pending) finish(err error) {
	p.err = err
	p.done.Done()
}

func newWriter(q *Queue) *writer {
	w := &writer{q: q, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.mu.want = 1
	return w
}

// Append queues c for the next write.
// REQUIRES: the DB's commit sequencer (so the queue is in commit order).
func (w *writer) Append(c *seam.Commit) (seam.Waiter, error) {
	p := &pending{c: c}
	p.done.Add(1)
	w.mu.Lock()
	switch {
	case w.mu.err != nil:
		err := w.mu.err
		w.mu.Unlock()
		return nil, err
	case w.mu.closed:
		w.mu.Unlock()
		return nil, ErrClosed
	}
	w.mu.queue = append(w.mu.queue, p)
	signal := len(w.mu.queue) >= w.mu.want
	w.mu.Unlock()
	if signal {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	if w.q.opts.Durability == Async {
		// Run does not wait for the disk, and neither do readers.
		return nil, nil
	}
	return p, nil
}

// failure returns the write error that stopped the writer, or nil.
func (w *writer) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.err
}

func (w *writer) close() {
	w.mu.Lock()
	w.mu.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	var timer *time.Timer
	var released int            // commits the last write released
	var others int              // commits queued when it released them
	var lastWrite time.Duration // how long it took
	for {
		if w.q.opts.Durability == Sync && released > 1 {
			// The committers the last write released are coming back,
			// while others queued during that write. Without a pause the
			// committers settle into two cohorts that alternate, each
			// write carrying half of them. So wait, up to one write's
			// duration (at most maxGather), until all the released ones
			// have queued too: each write's fsync costs about a
			// millisecond of CPU on a small VM, so a fuller group saves
			// CPU as well as a write. Measured at 64 committers against
			// waiting for 3/4 of them for half a write (at most 500µs):
			// 59 commits a write instead of 50 and a lower p99, in three
			// interleaved rounds; at 8 committers, ~15% more commits/s.
			// Under low load (released <= 1) nothing waits.
			//
			// The commits queued when the write released its committers
			// are from other committers; those queued since may be from
			// the released ones already, so counting them too would wait
			// for more commits than there are committers, until the
			// timeout (at 64 committers it did so on 3-8% of the writes
			// in debug runs, for 1ms each).
			w.gather(others+released, min(lastWrite, maxGather))
		}
		w.mu.Lock()
		group, closed, failed := w.mu.queue, w.mu.closed, w.mu.err != nil
		w.mu.queue = nil
		w.mu.Unlock()
		if len(group) == 0 {
			if closed || failed {
				return
			}
			released = 0
			<-w.wake
			if w.q.opts.Durability == Async {
				// Let the interval's commits gather into one write.
				if timer == nil {
					timer = time.NewTimer(w.q.opts.FlushInterval)
				} else {
					timer.Reset(w.q.opts.FlushInterval)
				}
				select {
				case <-timer.C:
				case <-w.q.stop:
				}
			}
			continue
		}
		t0 := time.Now()
		others = w.write(group)
		released, lastWrite = len(group), time.Since(t0)
	}
}

// maxGather bounds how long the writer waits to gather a group.
const maxGather = time.Millisecond

// gather waits until at least want commits are queued, for at most d.
// Meanwhile Append wakes it only once the queue holds want commits.
func (w *writer) gather(want int, d time.Duration) {
	deadline := time.Now().Add(d)
	t := time.NewTimer(d)
	defer t.Stop()
	w.mu.Lock()
	w.mu.want = want
	w.mu.maxWant = max(w.mu.maxWant, want)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.mu.want = 1
		w.mu.Unlock()
	}()
	for {
		w.mu.Lock()
		n, closed := len(w.mu.queue), w.mu.closed
		w.mu.Unlock()
		if n >= want || closed || !time.Now().Before(deadline) {
			return
		}
		select {
		case <-w.wake:
		case <-t.C:
			return
		}
	}
}

// write writes a group of commits, in as few Badger transactions as their
// size allows. It returns how many commits were queued (by committers
// outside the group) when it released the group's first committers.
func (w *writer) write(group []*pending) (others int) {
	q := w.q
	others = -1
	limitSize, limitCount := q.bdb.MaxBatchSize()/2, q.bdb.MaxBatchCount()/2
	for len(group) > 0 {
		// Take the longest run of commits that fits in one transaction.
		n, size, count := 0, int64(0), int64(1)
		for n < len(group) {
			c := group[n].c
			cs, cc := int64(c.Size+len(c.Records)*32), int64(len(c.Records))
			if n > 0 && (size+cs > limitSize || count+cc > limitCount) {
				break
			}
			size, count = size+cs, count+cc
			n++
		}
		batch := group[:n]
		group = group[n:]
		head, entries, first, err := w.writeBatch(batch)
		if err != nil {
			w.fail(err, batch, group)
			return 0
		}
		q.stats.writes.Add(1)
		q.stats.commits.Add(uint64(len(batch)))
		if entries > 0 {
			q.stats.entries.Add(uint64(entries))
			q.committed(head, entries, first)
		}
		// Readers of these commits' values may now go on (before their own
		// committers are released, as the seam requires).
		stmx.Durable(q.db, batch[len(batch)-1].c.Version)
		if others < 0 {
			w.mu.Lock()
			others = len(w.mu.queue)
			w.mu.Unlock()
		}
		for _, p := range batch {
			p.finish(nil)
		}
	}
	return max(others, 0)
}

// writeBatch writes the commits in one Badger transaction. It returns the
// highest entry sequence number written, the number of entries, and the
// commit time of the first.
func (w *writer) writeBatch(batch []*pending) (head uint64, entries int64, first time.Time, err error) {
	q := w.q
	var deadGone int64
	q.wmu.Lock() // from the write to its sync: see Queue.wmu
	defer q.wmu.Unlock()
	txn := q.bdb.NewTransaction(true)
	defer txn.Discard()
	for _, p := range batch {
		for _, r := range p.c.Records {
			if r.Delete {
				err = txn.Delete(r.Key)
			} else {
				err = txn.Set(r.Key, r.Value)
			}
			if err != nil {
				return 0, 0, first, fmt.Errorf("effectqueue: write: %w", err)
			}
			if r.Delete && bytes.HasPrefix(r.Key, q.k.dead) {
				deadGone++ // a Replay
			}
			if bytes.HasPrefix(r.Key, q.k.entry) && !r.Delete {
				if entries == 0 {
					first = p.c.Time
				}
				entries++
				head = max(head, seqOf(q.k.entry, r.Key))
			}
		}
	}
	if entries > 0 {
		if err := txn.Set(q.k.next, u64b(head+1)); err != nil {
			return 0, 0, first, fmt.Errorf("effectqueue: write: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return 0, 0, first, fmt.Errorf("effectqueue: write: %w", err)
	}
	if err := q.syncLocked(); err != nil {
		return 0, 0, first, err
	}
	if deadGone > 0 {
		q.dead.Add(-deadGone)
	}
	return head, entries, first, nil
}

// fail stops the DB: the batch's transactions are applied in memory but not
// on disk, so no further commit may be accepted. From now on Append refuses
// commits with an error wrapping stm.ErrStopped, and every commit queued
// before gets the write error (Run makes it stm.ErrOutcomeUnknown).
func (w *writer) fail(err error, batch, rest []*pending) {
	q := w.q
	q.stats.writeErrors.Add(1)
	lost := 0
	if q.opts.Durability == Async {
		// Run returned nil for each of these.
		lost = len(batch) + len(rest)
	}
	w.mu.Lock()
	rest = append(rest, w.mu.queue...)
	if q.opts.Durability == Async {
		lost += len(w.mu.queue)
	}
	w.mu.queue = nil
	cause := err
	if lost > 0 {
		cause = fmt.Errorf("%w (%d asynchronous commits that Run had returned nil for are not on disk)", err, lost)
	}
	w.mu.err = fmt.Errorf("%w: %w", stm.ErrStopped, cause)
	w.mu.Unlock()
	q.stats.asyncLost.Add(uint64(lost))
	stmx.Stop(q.db, cause)
	if lost > 0 {
		q.opts.Logger.Error("effectqueue: asynchronous write failed; commits that Run had returned nil for are lost, and the database stopped accepting commits",
			"err", err, "lost_commits", lost)
	} else {
		q.opts.Logger.Error("effectqueue: write failed; the database stopped accepting commits", "err", err)
	}
	for _, p := range batch {
		p.finish(err)
	}
	for _, p := range rest {
		p.finish(err)
	}
}

// committed records that entries up to head are durable, and publishes
// the head.
func (q *Queue) committed(head uint64, n int64, first time.Time) {
	q.acct.Lock()
	if q.pending.Load() == 0 {
		// Nothing older is pending: the batch's first entry is the oldest.
		q.oldest.Store(first.UnixNano())
	}
	q.pending.Add(n)
	q.advance(head)
	q.acct.Unlock()
}

var _ seam.Log = (*writer)(nil)

// Scan implements seam.Store: persistent tables load their records with it.
func (w *writer) Scan(prefix []byte, fn func(key, value []byte) error) error {
	return w.q.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// Limits implements seam.Limiter: one commit must fit in one Badger
// transaction, with room for the group's bookkeeping.
func (w *writer) Limits() (records int, bytes int64) {
	return int(w.q.bdb.MaxBatchCount()/2) - 2, w.q.bdb.MaxBatchSize() / 2
}

var _ seam.Store = (*writer)(nil)
var _ seam.Limiter = (*writer)(nil)

// KeyPrefix implements seam.Store: every key the DB writes lives under the
// queue's prefix (Options.Prefix), so that several DBs can share a Badger.
func (w *writer) KeyPrefix() []byte { return w.q.k.root }
