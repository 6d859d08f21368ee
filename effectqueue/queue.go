package effectqueue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/stm"
)

// Queue is a durable FIFO of effects, written inside transactions of one
// stm.DB and read by consumers (usually a mover).
//
// A Queue is safe for concurrent use. Enqueue belongs in a transaction's
// body; the consumer methods are called outside transactions.
type Queue struct {
	db   *stm.DB
	bdb  *badger.DB
	own  bool // the queue opened bdb and closes it
	opts Options
	k    keys
	id   string
	w    *writer
	// syncWrites says whether Badger syncs every write itself; if not, the
	// queue calls Sync after each write that must be durable.
	syncWrites bool

	// next is the next sequence number to assign.
	// REQUIRES: the DB's commit sequencer (it is used only in Stage and
	// Unstage).
	next uint64

	// head is the highest sequence number that is durable: readers see
	// entries up to it, never beyond.
	head atomic.Uint64
	// notify is closed and replaced each time head advances.
	notify atomic.Pointer[chan struct{}]

	closed atomic.Bool
	// ops is held shared by each consumer method while it uses Badger, and
	// exclusively by Close before it closes Badger, so that no read or ack
	// runs into a closed Badger.
	ops sync.RWMutex

	// The backlog, read without locks (metrics read them on every scrape).
	// Only committed (the writer) and remove (a consumer) change them,
	// under acct.
	//
	// pending counts committed entries not yet acked or dead-lettered.
	pending atomic.Int64
	// oldest is the commit time (Unix nanoseconds) of the first pending
	// entry, 0 if none is pending.
	oldest atomic.Int64
	// cursor: every entry below it is acked or dead-lettered.
	cursor atomic.Uint64
	acct   sync.Mutex
	// dead counts the dead letters.
	dead atomic.Int64

	// wmu orders the queue's Badger writes against the fsyncs that make
	// them durable. On a Badger the queue owns, writes are not synced by
	// Badger (SyncWrites off): a write that must be durable (a commit, a
	// dead letter, retry or consumer state) holds wmu exclusively from its
	// write to its Sync, and every other write (acks, value-log GC) holds
	// it shared. So no other write can make Badger switch memtables
	// between a durable write and its Sync, which syncs only the current
	// memtable's log. Acks are not synced: a kill -9 loses none of them
	// (they are in the page cache), a power failure may lose the last ones
	// since the previous durable write, and those entries are delivered
	// again, as possibly landed (see DESIGN and package mover).
	wmu sync.RWMutex

	stats struct {
		commits, entries, writes, writeErrors, asyncLost atomic.Uint64
	}

	cons     consumer   // guards gone and retries
	replayMu sync.Mutex // one Replay or Discard at a time, so none enqueues twice

	stop chan struct{}
	bg   sync.WaitGroup

	// newLocal is q.newParticipant, made once: a method value or closure
	// made in Enqueue would be allocated on every call.
	newLocal func() seam.Local
}

// Open opens (or creates) the queue and attaches it to db as its durable
// log: from then on, transactions of db can Enqueue. A DB has one queue.
func Open(db *stm.DB, opts *Options) (*Queue, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	q := &Queue{db: db, opts: o, k: newKeys(o.Prefix), stop: make(chan struct{})}
	q.newLocal = q.newParticipant
	if o.Badger != nil {
		q.bdb = o.Badger
	} else {
		// A SIGKILL can leave empty files that Badger refuses to open.
		removeEmptyLogs(o.Dir, o.Logger)
		q.bdb, err = badger.Open(o.badgerOptions())
		if err != nil {
			return nil, fmt.Errorf("effectqueue: open badger in %s: %w", o.Dir, err)
		}
		q.own = true
	}
	q.syncWrites = q.bdb.Opts().SyncWrites
	if int64(o.MaxEntrySize) > q.bdb.MaxBatchSize()/2 {
		q.closeBadger()
		return nil, fmt.Errorf("effectqueue: MaxEntrySize %d is more than half the largest atomic Badger write (%d); raise MemTableSize",
			o.MaxEntrySize, q.bdb.MaxBatchSize())
	}
	if err := q.load(); err != nil {
		q.closeBadger()
		return nil, err
	}
	ch := make(chan struct{})
	q.notify.Store(&ch)
	q.w = newWriter(q)
	if err := stmx.AttachLog(db, q.w); err != nil {
		q.closeBadger()
		return nil, fmt.Errorf("effectqueue: %w", err)
	}
	q.bg.Go(q.w.run)
	if q.own {
		q.bg.Go(q.gcLoop)
	}
	return q, nil
}

// load reads the queue's metadata and counts the pending entries.
func (q *Queue) load() error {
	return q.bdb.Update(func(txn *badger.Txn) error {
		q.next = 1
		if v, err := getValue(txn, q.k.next); err != nil {
			return err
		} else if v != nil {
			q.next = u64(v)
		}
		cursor := uint64(1)
		if v, err := getValue(txn, q.k.cursor); err != nil {
			return err
		} else if v != nil {
			cursor = u64(v)
		}
		if v, err := getValue(txn, q.k.id); err != nil {
			return err
		} else if v != nil {
			q.id = string(v)
		} else {
			var b [8]byte
			_, _ = rand.Read(b[:])
			q.id = hex.EncodeToString(b[:])
			if err := txn.Set(q.k.id, []byte(q.id)); err != nil {
				return err
			}
		}
		q.head.Store(q.next - 1)
		// Count what is pending, from the cursor on, and note the entries
		// removed out of order (the gaps between pending ones).
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.k.entry})
		defer it.Close()
		first, pending, prev := true, int64(0), uint64(0)
		for it.Seek(seqKey(q.k.entry, cursor)); it.Valid(); it.Next() {
			seq := seqOf(q.k.entry, it.Item().Key())
			if seq >= q.next {
				return fmt.Errorf("%w: entry %d at or beyond the next sequence number %d", ErrCorrupt, seq, q.next)
			}
			if first {
				first = false
				cursor = seq
				if err := it.Item().Value(func(b []byte) error {
					r, err := decode(seq, b)
					q.oldest.Store(r.Time)
					return err
				}); err != nil {
					return err
				}
			} else {
				q.cons.gone.addRange(prev+1, seq-1)
			}
			prev = seq
			pending++
		}
		if first {
			cursor = q.next
		} else {
			q.cons.gone.addRange(prev+1, q.next-1)
		}
		q.cursor.Store(cursor)
		q.pending.Store(pending)
		it.Close()
		// The retry states, and how many dead letters there are.
		q.cons.retries = make(map[uint64]struct{})
		if err := eachKey(txn, q.k.retry, func(seq uint64) { q.cons.retries[seq] = struct{}{} }); err != nil {
			return err
		}
		var dead int64
		if err := eachKey(txn, q.k.dead, func(uint64) { dead++ }); err != nil {
			return err
		}
		q.dead.Store(dead)
		return nil
	})
}

// eachKey calls fn with the sequence number of each key under prefix.
func eachKey(txn *badger.Txn, prefix []byte, fn func(seq uint64)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != len(prefix)+8 {
			return fmt.Errorf("%w: key %q under %q", ErrCorrupt, k, prefix)
		}
		fn(seqOf(prefix, k))
	}
	return nil
}

func getValue(txn *badger.Txn, key []byte) ([]byte, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return it.ValueCopy(nil)
}

// ID returns the queue's id, the prefix of its operation ids.
func (q *Queue) ID() string { return q.id }

// Badger returns the Badger database holding the queue.
func (q *Queue) Badger() *badger.DB { return q.bdb }

// Close stops accepting entries, writes what was committed, detaches from
// the DB and, if the queue opened its Badger, closes it. Transactions that
// commit during Close either are written or fail with an error wrapping
// ErrClosed; consumer methods return ErrClosed. Close returns the write
// error that stopped the queue, if one did (in Async mode, the last
// interval's commits can fail to be written here). Close is idempotent.
func (q *Queue) Close() error {
	if !q.closed.CompareAndSwap(false, true) {
		return nil
	}
	q.w.close()
	close(q.stop)
	q.bg.Wait()
	stmx.DetachLog(q.db, q.w)
	// Wait for the consumer methods already under way.
	q.ops.Lock()
	defer q.ops.Unlock()
	err := q.closeBadger()
	if werr := q.w.failure(); werr != nil {
		err = errors.Join(fmt.Errorf("effectqueue: close: %w", werr), err)
	}
	return err
}

// enter admits a consumer method, unless the queue is closed; leave ends
// it.
func (q *Queue) enter() bool {
	q.ops.RLock()
	if q.closed.Load() {
		q.ops.RUnlock()
		return false
	}
	return true
}

func (q *Queue) leave() { q.ops.RUnlock() }

func (q *Queue) closeBadger() error {
	if !q.own {
		return nil
	}
	if err := q.bdb.Close(); err != nil {
		return fmt.Errorf("effectqueue: close badger: %w", err)
	}
	return nil
}

func (q *Queue) gcLoop() {
	t := time.NewTicker(q.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
			for q.valueLogGC() == nil {
			}
		}
	}
}

// valueLogGC rewrites one value-log file, if one is worth it. Its writes
// hold q.wmu shared, like acks (see wmu).
func (q *Queue) valueLogGC() error {
	q.wmu.RLock()
	defer q.wmu.RUnlock()
	return q.bdb.RunValueLogGC(0.5)
}

// Enqueue adds e to the queue as part of tx. It becomes durable and visible
// to consumers if and only if tx commits: attempts that rerun, roll back, or
// belong to a savepoint that rolls back leave nothing behind.
//
// Enqueue returns an error, and adds nothing, for bad input: an empty Kind,
// an entry over Options.MaxEntrySize, a transaction whose entries no longer
// fit in one atomic write, a Tx whose body has returned, a Tx of another DB
// (stm.ErrWrongDB), or a closed queue.
// The body decides what to do with it; returning it rolls back.
func (q *Queue) Enqueue(tx *stm.Tx, e Entry) error {
	if err := tx.Err(); err != nil {
		return fmt.Errorf("effectqueue: enqueue: %w", err)
	}
	if tx.DB() != q.db {
		return fmt.Errorf("effectqueue: enqueue: %w (the queue was opened on another stm.DB)", stm.ErrWrongDB)
	}
	if q.closed.Load() {
		return ErrClosed
	}
	if e.Kind == "" {
		return ErrEmptyKind
	}
	buf, room, fields := q.encodeEntry(&e, "")
	size := len(buf) - room + stagedOverhead
	if size > q.opts.MaxEntrySize {
		return fmt.Errorf("%w: %d bytes, the limit is %d (Options.MaxEntrySize)", ErrEntryTooLarge, size, q.opts.MaxEntrySize)
	}
	p := q.local(tx)
	if int64(p.size+size) > q.bdb.MaxBatchSize()/2 || int64(len(p.entries)+2) > q.bdb.MaxBatchCount()/2 {
		return fmt.Errorf("%w: %d entries, %d bytes so far; split the work over several transactions", ErrTxTooLarge, len(p.entries)+1, p.size+size)
	}
	p.entries = append(p.entries, pendingEntry{buf: buf, room: room, fields: fields, size: size})
	p.size += size
	return nil
}

// encodeEntry encodes e's body with room in front for its key and header
// (see stageInPlace), for an operation id opID, or the queue's own if
// opID is empty.
func (q *Queue) encodeEntry(e *Entry, opID string) (buf []byte, room, fields int) {
	idLen := len(opID)
	if opID == "" {
		idLen = len(q.id) + 1 + 20 // id-seq
	}
	room = len(q.k.entry) + 8 + headerRoom(idLen)
	buf, fields = encodeBodyRoom(e, room)
	return buf, room, fields
}

type localKey struct{ q *Queue }

func (q *Queue) local(tx *stm.Tx) *participant {
	return stmx.Local(tx, localKey{q}, q.newLocal).(*participant)
}

// newParticipant is the transaction's part of the queue, with room for
// one entry (the common case) in the same allocation.
func (q *Queue) newParticipant() seam.Local {
	p := &participant{q: q}
	p.entries = p.one[:0]
	return p
}

// pendingEntry is an entry enqueued by the current attempt, already
// encoded but for its sequence number, operation id and commit time.
type pendingEntry struct {
	buf        []byte // room bytes for the key and header, then the body
	room       int
	fields     int
	size       int    // its stored size (body + stagedOverhead), counted against the limits
	opID       string // kept from a replayed dead letter
	deadLetter uint64 // the dead letter a replay removes
}

// participant is a transaction's part of the queue.
type participant struct {
	q       *Queue
	entries []pendingEntry
	size    int
	first   uint64 // first sequence number staged
	one     [1]pendingEntry
}

func (p *participant) Mark() int { return len(p.entries) }

func (p *participant) RollbackTo(mark int) {
	for _, e := range p.entries[mark:] {
		p.size -= e.size
	}
	clear(p.entries[mark:])
	p.entries = p.entries[:mark]
}

func (p *participant) End(bool) {}

func (p *participant) Pending() bool { return len(p.entries) > 0 }

// Size implements seam.Sizer, so that the commit checks the whole
// transaction (queue entries and table records) against one atomic write.
func (p *participant) Size() (int, int64) {
	n := len(p.entries)
	for _, e := range p.entries {
		if e.deadLetter != 0 {
			n++
		}
	}
	return n, int64(p.size)
}

// Stage numbers the entries and adds their records to c.
// REQUIRES: the DB's commit sequencer (see stm's durable seam).
func (p *participant) Stage(c *seam.Commit) {
	q := p.q
	p.first = q.next
	t := c.Time.UnixNano()
	for i := range p.entries {
		e := &p.entries[i]
		seq := q.next
		q.next++
		key, value := stageInPlace(e.buf, e.room, q.k.entry, e.opID, q.id, seq, t, e.fields)
		c.Add(seam.Record{Key: key, Value: value})
		if e.deadLetter != 0 {
			c.Add(seam.Record{Key: seqKey(q.k.dead, e.deadLetter), Delete: true})
		}
	}
}

// Unstage gives back the sequence numbers of a commit that failed.
// REQUIRES: the DB's commit sequencer.
func (p *participant) Unstage(*seam.Commit) { p.q.next = p.first }

// Notify returns a channel that is closed when new entries become visible
// to readers. Take a new channel after each wake-up.
func (q *Queue) Notify() <-chan struct{} { return *q.notify.Load() }

// Head returns the highest durable sequence number (0 if none yet).
func (q *Queue) Head() uint64 { return q.head.Load() }

// advance publishes the durable head and wakes readers.
func (q *Queue) advance(head uint64) {
	q.head.Store(head)
	ch := make(chan struct{})
	old := q.notify.Swap(&ch)
	close(*old)
}

// Wait blocks until a pending entry with a sequence number above after is
// visible (one that Read(ctx, after, ...) would return), the queue is closed
// (ErrClosed), or ctx ends (ctx.Err(), also when ctx has already ended).
//
// Entries above after that were already acked or dead-lettered do not count:
// a consumer that read everything up to the head, and whose entries were
// then acked, waits for the next commit instead of returning at once. Each
// time the head advances, Wait looks at the new entries once (one seek).
func (q *Queue) Wait(ctx context.Context, after uint64) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ch := q.Notify()
		if head := q.head.Load(); head > after {
			ok, err := q.anyPending(after, head)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			// Nothing in (after, head] is pending: only what comes next can
			// wake us.
			after = head
		}
		if q.closed.Load() {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-q.stop:
			return ErrClosed
		}
	}
}

// anyPending reports whether an entry in (after, head] is pending.
func (q *Queue) anyPending(after, head uint64) (bool, error) {
	from := max(after+1, q.cursor.Load())
	if from > head {
		return false, nil
	}
	if !q.enter() {
		return false, ErrClosed
	}
	defer q.leave()
	found := false
	err := q.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.k.entry})
		defer it.Close()
		it.Seek(seqKey(q.k.entry, from))
		found = it.Valid() && seqOf(q.k.entry, it.Item().Key()) <= head
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("effectqueue: wait: %w", err)
	}
	return found, nil
}
