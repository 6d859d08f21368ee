package effectqueue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

func openQueue(t testing.TB, dir string, o *effectqueue.Options) (*stm.DB, *effectqueue.Queue) {
	t.Helper()
	db, err := stm.Open(nil)
	require.NoError(t, err)
	opts := effectqueue.Options{Dir: dir}
	if o != nil {
		opts = *o
		if opts.Dir == "" && opts.Badger == nil {
			opts.Dir = dir
		}
	}
	q, err := effectqueue.Open(db, &opts)
	require.NoError(t, err)
	return db, q
}

// quiet is a logger for tests that provoke errors on purpose.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func readAll(t testing.TB, q *effectqueue.Queue) []effectqueue.Item {
	t.Helper()
	items, err := q.Read(context.Background(), 0, 1<<30)
	require.NoError(t, err)
	return items
}

func payloads(items []effectqueue.Item) []string {
	var s []string
	for _, it := range items {
		s = append(s, string(it.Payload))
	}
	return s
}

// TestAtomicity: attempts that rerun, transactions that roll back and
// savepoints that roll back leave nothing; committed transactions leave
// exactly their entries, in order.
func TestAtomicity(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	v := stm.NewVar(nil, 0)
	errNo := errors.New("no")
	// A rerun: the first attempt enqueues "stale", then is made stale.
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		x, _ := v.Load(tx)
		if tx.Attempt() == 1 {
			require.NoError(t, q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("stale")}))
			require.NoError(t, testutil.Elsewhere(func() error {
				return db.Run(ctx, func(tx *stm.Tx) error { v.Store(tx, x+1); return nil })
			}))
		} else {
			require.NoError(t, q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("rerun-ok")}))
		}
		v.Store(tx, x+10)
		return nil
	}))
	// A rollback.
	err := db.Run(ctx, func(tx *stm.Tx) error {
		require.NoError(t, q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("rolled back")}))
		return errNo
	})
	require.ErrorIs(t, err, errNo)
	// A savepoint that rolls back inside a transaction that commits.
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		require.NoError(t, q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("a")}))
		_ = tx.Savepoint(func(tx *stm.Tx) error {
			require.NoError(t, q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("savepoint")}))
			return errNo
		})
		return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("b")})
	}))
	items := readAll(t, q)
	assert.Equal(t, []string{"rerun-ok", "a", "b"}, payloads(items))
	for i, it := range items {
		assert.Equal(t, uint64(i+1), it.Seq)
		assert.Equal(t, fmt.Sprintf("%s-%d", q.ID(), it.Seq), it.OpID)
	}
	assert.Equal(t, items[1].Committed, items[2].Committed, "one transaction, one commit time")
	assert.Equal(t, int64(3), q.Depth())
}

func TestBadInput(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), &effectqueue.Options{MaxEntrySize: 1000})
	ctx := context.Background()
	var outside *stm.Tx
	err := db.Run(ctx, func(tx *stm.Tx) error {
		outside = tx
		assert.ErrorIs(t, q.Enqueue(tx, effectqueue.Entry{Payload: []byte("x")}), effectqueue.ErrEmptyKind)
		err := q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: make([]byte, 2000)})
		assert.ErrorIs(t, err, effectqueue.ErrEntryTooLarge)
		assert.ErrorContains(t, err, "the limit is 1000")
		// The body decides: it goes on and commits a good entry.
		return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("good")})
	})
	require.NoError(t, err)
	assert.ErrorIs(t, q.Enqueue(outside, effectqueue.Entry{Kind: "k"}), stm.ErrTxDone)
	assert.Equal(t, []string{"good"}, payloads(readAll(t, q)))
	require.NoError(t, q.Close())
	err = db.Run(ctx, func(tx *stm.Tx) error { return q.Enqueue(tx, effectqueue.Entry{Kind: "k"}) })
	assert.ErrorIs(t, err, effectqueue.ErrClosed)
}

// TestTxTooLarge: a transaction whose entries would not fit in one atomic
// Badger write is refused at Enqueue, never partly written.
func TestTxTooLarge(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), &effectqueue.Options{MemTableSize: 4 << 20, MaxEntrySize: 64 << 10})
	defer q.Close()
	var n int
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		for n = 0; ; n++ {
			if err := q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: make([]byte, 60<<10)}); err != nil {
				return err
			}
		}
	})
	assert.ErrorIs(t, err, effectqueue.ErrTxTooLarge)
	assert.Positive(t, n)
	assert.Empty(t, readAll(t, q))
}

// TestOrderUnderConcurrency: goroutines increment shared counters and
// enqueue the value they wrote. For each counter the queued values are
// strictly increasing in sequence order, and the sequence has no gaps.
func TestOrderUnderConcurrency(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), nil)
	defer q.Close()
	counters, err := table.New[int, int](db, "counters")
	require.NoError(t, err)
	const goroutines, each, ncounters = 16, 60, 3
	var wg sync.WaitGroup
	var failed sync.Map
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				c := (g + i) % ncounters
				err := db.Run(context.Background(), func(tx *stm.Tx) error {
					v, _ := counters.Get(tx, c)
					counters.Put(tx, c, v+1)
					return q.Enqueue(tx, effectqueue.Entry{Kind: "count", Key: strconv.Itoa(c), Payload: []byte(strconv.Itoa(v + 1))})
				})
				if err != nil {
					failed.Store(g, err)
				}
			}
		})
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("goroutine %v: %v", k, v); return true })
	items := readAll(t, q)
	require.Equal(t, goroutines*each, len(items))
	last := map[string]int{}
	for i, it := range items {
		require.Equal(t, uint64(i+1), it.Seq, "gap in sequence numbers")
		v, _ := strconv.Atoi(string(it.Payload))
		require.Equal(t, last[it.Key]+1, v, "counter %s out of order at seq %d", it.Key, it.Seq)
		last[it.Key] = v
	}
	t.Logf("stats %+v", db.Stats())
}

// TestConsumerSurvivesRestart: acks, dead letters and replays persist,
// numbering continues, and reads skip the acked prefix.
func TestConsumerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, q := openQueue(t, dir, nil)
	for i := 1; i <= 10; i++ {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Key: "x", Payload: []byte(strconv.Itoa(i)),
				Meta: map[string]string{"n": strconv.Itoa(i)}})
		}))
	}
	require.NoError(t, q.Ack(ctx, 1, 2, 4))
	require.NoError(t, q.Ack(ctx, 2), "ack is idempotent")
	require.NoError(t, q.DeadLetter(ctx, 3, "bucket missing"))
	require.NoError(t, q.DeadLetter(ctx, 5, "access denied"))
	assert.ErrorIs(t, q.DeadLetter(ctx, 3, "again"), effectqueue.ErrNotFound)
	assert.ErrorContains(t, q.Ack(ctx, 99), "not committed")
	require.NoError(t, q.SetRetryState(ctx, 6, effectqueue.RetryState{Attempts: 3, LastError: "503"}))
	assert.Equal(t, int64(5), q.Depth())
	assert.Positive(t, q.OldestAge())
	require.NoError(t, q.Close())

	db, q = openQueue(t, dir, nil)
	defer q.Close()
	assert.Equal(t, int64(5), q.Depth())
	items := readAll(t, q)
	assert.Equal(t, []string{"6", "7", "8", "9", "10"}, payloads(items))
	assert.Equal(t, map[string]string{"n": "6"}, items[0].Meta)
	rs, err := q.RetryStateOf(6)
	require.NoError(t, err)
	assert.Equal(t, 3, rs.Attempts)
	dead, err := q.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, dead, 2)
	assert.Equal(t, "bucket missing", dead[0].Reason)
	assert.Equal(t, uint64(3), dead[0].Seq)

	seq, err := q.Replay(ctx, 3)
	require.NoError(t, err)
	assert.Equal(t, uint64(11), seq, "numbering continues after the restart")
	_, err = q.Replay(ctx, 3)
	assert.ErrorIs(t, err, effectqueue.ErrNotFound, "a dead letter replays once")
	require.NoError(t, q.Discard(ctx, 5))
	assert.ErrorIs(t, q.Discard(ctx, 5), effectqueue.ErrNotFound)
	require.NoError(t, q.Close())

	_, q = openQueue(t, dir, nil)
	defer q.Close()
	items = readAll(t, q)
	last := items[len(items)-1]
	assert.Equal(t, uint64(11), last.Seq)
	assert.Equal(t, "3", string(last.Payload))
	assert.Equal(t, dead[0].OpID, last.OpID, "replay keeps the operation id")
	dead, err = q.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	assert.Empty(t, dead)
	require.NoError(t, q.Ack(ctx, 6, 7, 8, 9, 10, 11))
	assert.Zero(t, q.Depth())
	assert.Zero(t, q.OldestAge())
}

// TestWaitWakesOnCommit: a reader blocked in Wait wakes when a commit
// lands, without polling.
func TestWaitWakesOnCommit(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), nil)
	defer q.Close()
	woke := make(chan error, 1)
	ready := q.Notify()
	go func() { woke <- q.Wait(context.Background(), 0) }()
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		return q.Enqueue(tx, effectqueue.Entry{Kind: "k"})
	}))
	require.NoError(t, <-woke)
	<-ready // the channel taken before the commit is closed by it
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, q.Wait(ctx, 1), context.Canceled)
}

// TestAsync: Run returns before the write; entries become visible when
// written, and Close writes everything committed.
func TestAsync(t *testing.T) {
	dir := t.TempDir()
	db, q := openQueue(t, dir, &effectqueue.Options{Durability: effectqueue.Async})
	for i := range 50 {
		require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
			return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte(strconv.Itoa(i))})
		}))
	}
	require.NoError(t, q.Wait(context.Background(), 49))
	require.NoError(t, q.Close())
	_, q = openQueue(t, dir, nil)
	defer q.Close()
	assert.Len(t, readAll(t, q), 50)
}

// TestWriteFailureStopsDB injects a real write failure: the Badger the
// queue writes to is closed under it. The transaction reports that it is
// not durable, the DB stops accepting commits and says why, and after a
// reopen the queue holds exactly what was acknowledged before.
func TestWriteFailureStopsDB(t *testing.T) {
	dir := t.TempDir()
	bdb, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithMemTableSize(8 << 20))
	require.NoError(t, err)
	db, q := openQueue(t, dir, &effectqueue.Options{Badger: bdb, MaxEntrySize: 64 << 10})
	ctx := context.Background()
	v := stm.NewVar(nil, 0)
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		v.Store(tx, 1)
		return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("acknowledged")})
	}))
	require.NoError(t, bdb.Close()) // the fault
	err = db.Run(ctx, func(tx *stm.Tx) error {
		return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("lost")})
	})
	require.ErrorIs(t, err, stm.ErrOutcomeUnknown)
	t.Logf("failed commit: %v", err)
	err = db.Run(ctx, func(tx *stm.Tx) error { v.Store(tx, 2); return nil })
	require.ErrorIs(t, err, stm.ErrStopped)
	assert.ErrorContains(t, err, "write")
	_ = q.Close()

	_, q = openQueue(t, dir, nil)
	defer q.Close()
	assert.Equal(t, []string{"acknowledged"}, payloads(readAll(t, q)))
}

// TestHeapAfterOpen reports the heap an open, empty queue costs.
func TestHeapAfterOpen(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, q := openQueue(t, t.TempDir(), nil)
	defer q.Close()
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after Open: +%.1f MB (Badger defaults cost ~86 MB)", float64(grew)/(1<<20))
	assert.Less(t, grew, int64(48<<20))
}

func TestKeysUnderPrefix(t *testing.T) {
	dir := t.TempDir()
	bdb, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	defer bdb.Close()
	require.NoError(t, bdb.Update(func(txn *badger.Txn) error { return txn.Set([]byte("app/own"), []byte("x")) }))
	db, q := openQueue(t, dir, &effectqueue.Options{Badger: bdb, Prefix: "game1/q/"})
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		return q.Enqueue(tx, effectqueue.Entry{Kind: "k"})
	}))
	require.NoError(t, q.Close())
	var keys []string
	require.NoError(t, bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Item().Key()))
		}
		return nil
	}))
	for _, k := range keys {
		assert.True(t, k == "app/own" || strings.HasPrefix(k, "game1/q/"), k)
	}
	assert.True(t, slices.Contains(keys, "app/own"))
}
