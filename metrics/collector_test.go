package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
	"github.com/zest-stm/zest/whilecommit"
)

// TestStmMetrics drives a DB into every counter the collector exports —
// a commit, a rerun forced by a conflicting commit on a table, an
// escalation, a body error, a body panic, a cancellation between attempts,
// hook runs and a hook panic — and compares the exposition with the text
// written out by hand from those events.
func TestStmMetrics(t *testing.T) {
	ctx := context.Background()
	db, err := stm.Open(&stm.Options{EscalateAfter: 2, Logger: discardLogger()})
	require.NoError(t, err)
	bags, err := table.New[string, int](db, "bags")
	require.NoError(t, err)
	c, err := metrics.NewCollector(&metrics.Options{DB: db})
	require.NoError(t, err)

	// 1 commit (plus 1 by conflict), 1 validation rerun on "bags".
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		v, _ := bags.Get(tx, "alice")
		if tx.Attempt() == 1 {
			if err := conflict(db, bags, "alice"); err != nil {
				return err
			}
		}
		bags.Put(tx, "bob", v)
		return nil
	}))
	// 1 commit (plus 2 by conflicts), 2 reruns, 1 escalation (attempt 3 is serial).
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		v, _ := bags.Get(tx, "alice")
		if tx.Attempt() <= 2 {
			if err := conflict(db, bags, "alice"); err != nil {
				return err
			}
		}
		bags.Put(tx, "carol", v)
		whilecommit.Do(tx, func() {})
		whilecommit.Do(tx, func() { panic("hook boom") })
		whilecommit.Do(tx, func() {})
		return nil
	}))
	// A body error and a body panic: aborts, no commit.
	errBody := errors.New("body says no")
	require.ErrorIs(t, db.Run(ctx, func(tx *stm.Tx) error { return errBody }), errBody)
	require.Panics(t, func() { _ = db.Run(ctx, func(tx *stm.Tx) error { panic("body boom") }) })
	// Canceled between attempts: a rerun, then the context ends.
	cctx, cancel := context.WithCancel(ctx)
	require.ErrorIs(t, db.Run(cctx, func(tx *stm.Tx) error {
		v, _ := bags.Get(tx, "alice")
		if err := conflict(db, bags, "alice"); err != nil {
			return err
		}
		cancel()
		bags.Put(tx, "dave", v)
		return nil
	}), context.Canceled)

	// Commits: 2 bodies + 4 conflicting writers. Reruns: 1 + 2 + 1.
	want := `
# HELP zest_hooks_panics_total whilecommit hooks that panicked (recovered and logged; the commit stands).
# TYPE zest_hooks_panics_total counter
zest_hooks_panics_total 1
# HELP zest_hooks_run_total whilecommit hooks called.
# TYPE zest_hooks_run_total counter
zest_hooks_run_total 3
# HELP zest_stm_aborts_total Transactions that ended without committing, by reason: error (the body returned one), panic, canceled (context), redo_limit.
# TYPE zest_stm_aborts_total counter
zest_stm_aborts_total{reason="canceled"} 1
zest_stm_aborts_total{reason="error"} 1
zest_stm_aborts_total{reason="panic"} 1
zest_stm_aborts_total{reason="redo_limit"} 0
# HELP zest_stm_commits_total Transactions that committed.
# TYPE zest_stm_commits_total counter
zest_stm_commits_total 6
# HELP zest_stm_conflicts_total Reruns by the table of the record that caused them ((none) for records in no table).
# TYPE zest_stm_conflicts_total counter
zest_stm_conflicts_total{table="bags"} 4
# HELP zest_stm_escalations_total Transactions that switched to serial mode after repeated conflicts.
# TYPE zest_stm_escalations_total counter
zest_stm_escalations_total 1
# HELP zest_stm_reruns_total Attempts discarded and run again, by cause.
# TYPE zest_stm_reruns_total counter
zest_stm_reruns_total{cause="error_after_stale_read"} 0
zest_stm_reruns_total{cause="locked"} 0
zest_stm_reruns_total{cause="panic_after_stale_read"} 0
zest_stm_reruns_total{cause="stale_read"} 0
zest_stm_reruns_total{cause="validation"} 4
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want)))
}

// TestStmMetricsRedoLimitAndUngrouped: the redo limit is its own abort
// reason, and conflicts on a Var in no table are labelled "(none)".
func TestStmMetricsRedoLimitAndUngrouped(t *testing.T) {
	ctx := context.Background()
	db, err := stm.Open(&stm.Options{MaxAttempts: 2, EscalateAfter: 2}) // the redo limit is checked before escalating
	require.NoError(t, err)
	v := stm.NewVar(nil, 0)
	c, err := metrics.NewCollector(&metrics.Options{DB: db})
	require.NoError(t, err)
	bump := func() error {
		done := make(chan error, 1)
		go func() {
			done <- db.Run(ctx, func(tx *stm.Tx) error { x, _ := v.Load(tx); v.Store(tx, x+1); return nil })
		}()
		return <-done
	}
	err = db.Run(ctx, func(tx *stm.Tx) error {
		x, _ := v.Load(tx)
		if err := bump(); err != nil {
			return err
		}
		v.Store(tx, x+10)
		return nil
	})
	require.ErrorIs(t, err, stm.ErrTooManyAttempts)
	want := `
# HELP zest_stm_aborts_total Transactions that ended without committing, by reason: error (the body returned one), panic, canceled (context), redo_limit.
# TYPE zest_stm_aborts_total counter
zest_stm_aborts_total{reason="canceled"} 0
zest_stm_aborts_total{reason="error"} 0
zest_stm_aborts_total{reason="panic"} 0
zest_stm_aborts_total{reason="redo_limit"} 1
# HELP zest_stm_commits_total Transactions that committed.
# TYPE zest_stm_commits_total counter
zest_stm_commits_total 2
# HELP zest_stm_conflicts_total Reruns by the table of the record that caused them ((none) for records in no table).
# TYPE zest_stm_conflicts_total counter
zest_stm_conflicts_total{table="(none)"} 2
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"zest_stm_aborts_total", "zest_stm_commits_total", "zest_stm_conflicts_total"))
}

// TestQueueMetrics: depth, oldest age and dead letters of two real queues
// (Badger in temporary directories), compared with what was enqueued,
// acked and dead-lettered.
func TestQueueMetrics(t *testing.T) {
	ctx := context.Background()
	db1, q1 := openQueue(t, nil)
	db2, q2 := openQueue(t, nil)
	c, err := metrics.NewCollector(&metrics.Options{Queues: map[string]*effectqueue.Queue{"orders": q1, "receipts": q2}})
	require.NoError(t, err)

	// orders: 2 dead letters, then 3 pending of which 1 acked.
	enqueue(t, db1, q1, "s3.put", "a", "b")
	deadLetterAll(t, q1)
	before := time.Now()
	enqueue(t, db1, q1, "s3.put", "c", "d", "e")
	items, err := q1.Read(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, items, 3)
	require.NoError(t, q1.Ack(ctx, items[2].Seq))
	// receipts: empty.
	_ = db2

	want := `
# HELP zest_queue_dead_letters Dead letters waiting for an operator.
# TYPE zest_queue_dead_letters gauge
zest_queue_dead_letters{queue="orders"} 2
zest_queue_dead_letters{queue="receipts"} 0
# HELP zest_queue_depth Committed entries not yet acked or dead-lettered.
# TYPE zest_queue_depth gauge
zest_queue_depth{queue="orders"} 2
zest_queue_depth{queue="receipts"} 0
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"zest_queue_dead_letters", "zest_queue_depth"))

	// The queue's own counters: two transactions of five entries on
	// orders, nothing on receipts, no failed write.
	counters := `
# HELP zest_queue_async_lost_total Async-mode transactions reported committed whose write then failed.
# TYPE zest_queue_async_lost_total counter
zest_queue_async_lost_total{queue="orders"} 0
zest_queue_async_lost_total{queue="receipts"} 0
# HELP zest_queue_commits_total Transactions written by the queue (with entries or durable table records).
# TYPE zest_queue_commits_total counter
zest_queue_commits_total{queue="orders"} 2
zest_queue_commits_total{queue="receipts"} 0
# HELP zest_queue_entries_total Entries written.
# TYPE zest_queue_entries_total counter
zest_queue_entries_total{queue="orders"} 5
zest_queue_entries_total{queue="receipts"} 0
# HELP zest_queue_write_errors_total Failed writes; after the first, the DB stops accepting commits.
# TYPE zest_queue_write_errors_total counter
zest_queue_write_errors_total{queue="orders"} 0
zest_queue_write_errors_total{queue="receipts"} 0
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(counters),
		"zest_queue_async_lost_total", "zest_queue_commits_total", "zest_queue_entries_total", "zest_queue_write_errors_total"))
	// Group commit: at least one write, at most one per transaction.
	writes := gatherValues(t, c, "zest_queue_writes_total")
	assert.GreaterOrEqual(t, writes[`queue="orders"`], 1.0)
	assert.LessOrEqual(t, writes[`queue="orders"`], 2.0)
	assert.Equal(t, 0.0, writes[`queue="receipts"`])

	// The oldest age is a clock reading: between 0 and the time since
	// before the entries were committed; 0 for the empty queue.
	ages := gatherValues(t, c, "zest_queue_oldest_age_seconds")
	assert.Equal(t, 0.0, ages[`queue="receipts"`])
	assert.Greater(t, ages[`queue="orders"`], 0.0)
	assert.LessOrEqual(t, ages[`queue="orders"`], time.Since(before).Seconds())
}

// TestDeadLetterCount: the dead-letter gauge follows the queue's count
// exactly, past any page size (520 dead letters), through replays and
// discards, and a queue closed under the collector still reports its
// last values with the rest of the scrape.
func TestDeadLetterCount(t *testing.T) {
	ctx := context.Background()
	db, q := openQueue(t, nil)
	c, err := metrics.NewCollector(&metrics.Options{DB: db, Queues: map[string]*effectqueue.Queue{"q": q}})
	require.NoError(t, err)
	dead := func() float64 { return gatherValues(t, c, "zest_queue_dead_letters")[`queue="q"`] }
	assert.Equal(t, 0.0, dead())
	const n = 520
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	enqueue(t, db, q, "s3.put", keys...)
	deadLetterAll(t, q)
	assert.Equal(t, float64(n), dead())
	dls, err := q.DeadLetters(ctx, 0, 3)
	require.NoError(t, err)
	_, err = q.Replay(ctx, dls[0].Seq)
	require.NoError(t, err)
	require.NoError(t, q.Discard(ctx, dls[1].Seq))
	assert.Equal(t, float64(n-2), dead())
	assert.Equal(t, 1.0, gatherValues(t, c, "zest_queue_depth")[`queue="q"`], "the replayed one is pending")

	require.NoError(t, q.Close())
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err, "a closed queue's counters are still read")
	assert.Equal(t, map[string]float64{`queue="q"`: float64(n - 2)}, valuesOf(mfs, "zest_queue_dead_letters"))
	assert.Equal(t, map[string]float64{"": 2}, valuesOf(mfs, "zest_stm_commits_total"), "the enqueue, and the replay's")
}

// TestSagaAndIdemSources: the optional sources through their interfaces.
func TestSagaAndIdemSources(t *testing.T) {
	c, err := metrics.NewCollector(&metrics.Options{
		Sagas: metrics.SagaSourceFunc(func() map[string]int64 { return map[string]int64{"running": 3, "stuck": 1, "done": 0} }),
		Idem:  metrics.IdemSourceFunc(func() uint64 { return 42 }),
	})
	require.NoError(t, err)
	want := `
# HELP zest_idem_replays_total Requests answered from a stored idempotency token instead of running again.
# TYPE zest_idem_replays_total counter
zest_idem_replays_total 42
# HELP zest_sagas Sagas by state.
# TYPE zest_sagas gauge
zest_sagas{state="done"} 0
zest_sagas{state="running"} 3
zest_sagas{state="stuck"} 1
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want)))
}

// TestLint: every metric passes promlint (names, units, _total, help).
func TestLint(t *testing.T) {
	db, q := openQueue(t, nil)
	enqueue(t, db, q, "s3.put", "a")
	c, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Queues: map[string]*effectqueue.Queue{"q": q},
		Sagas:  metrics.SagaSourceFunc(func() map[string]int64 { return map[string]int64{"stuck": 1} }),
		Idem:   metrics.IdemSourceFunc(func() uint64 { return 1 }),
	})
	require.NoError(t, err)
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
	assert.Greater(t, testutil.CollectAndCount(c), 10, "the lint saw the metrics")
}

// TestOptions: each invalid field is refused with an error naming it.
func TestOptions(t *testing.T) {
	_, q := openQueue(t, nil)
	for _, tc := range []struct {
		name string
		opts *metrics.Options
		want []string
		is   error
	}{
		{"nil", nil, []string{"no source"}, metrics.ErrNoSource},
		{"empty", &metrics.Options{}, []string{"no source"}, metrics.ErrNoSource},
		{"empty queue name", &metrics.Options{Queues: map[string]*effectqueue.Queue{"": q}}, []string{"Queues", `""`}, metrics.ErrOptions},
		{"nil queue", &metrics.Options{Queues: map[string]*effectqueue.Queue{"q": nil}}, []string{`Queues["q"] is nil`}, metrics.ErrOptions},
		{"bad utf8 name", &metrics.Options{Queues: map[string]*effectqueue.Queue{"\xff": q}}, []string{"Queues"}, metrics.ErrOptions},
		{"nil mover", &metrics.Options{Movers: map[string]metrics.Mover{"m": nil}}, []string{`Movers["m"] is nil`}, metrics.ErrOptions},
		{"two at once", &metrics.Options{Queues: map[string]*effectqueue.Queue{"": q}, Movers: map[string]metrics.Mover{"m": nil}}, []string{"Queues", `Movers["m"] is nil`}, metrics.ErrOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := metrics.NewCollector(tc.opts)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, tc.is)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	// Later changes to the caller's map do not change the collector.
	queues := map[string]*effectqueue.Queue{"q": q}
	c, err := metrics.NewCollector(&metrics.Options{Queues: queues})
	require.NoError(t, err)
	queues["other"] = q
	assert.Equal(t, 1, testutil.CollectAndCount(c, "zest_queue_depth"))
}
