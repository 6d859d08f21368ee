package metrics_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/mover"
)

// fakeSink fails by key: "bad" permanently, "flaky" on its first attempt;
// "stuck" fails its first attempt and then hangs until the delivery's
// context ends, so its lane stays blocked; everything else lands. It is
// safe for concurrent use.
type fakeSink struct {
	mu     sync.Mutex
	landed []string
}

var errFake = errors.New("fake sink: unavailable")

func (s *fakeSink) Apply(ctx context.Context, d mover.Delivery) error {
	switch {
	case d.Key == "bad":
		return mover.Permanent(errors.New("fake sink: access denied"))
	case d.Key == "flaky" && d.Attempt == 1, d.Key == "stuck" && d.Attempt == 1:
		return errFake
	case d.Key == "stuck":
		<-ctx.Done()
		return ctx.Err()
	}
	s.mu.Lock()
	s.landed = append(s.landed, d.Key)
	s.mu.Unlock()
	return nil
}

// startMover runs a mover over q with two sinks, "s3" and "nats", both
// fakes, and stops it when the test ends.
func startMover(t *testing.T, q *effectqueue.Queue) *mover.Mover {
	t.Helper()
	m, err := mover.New(q, map[string]mover.Sink{"s3": &fakeSink{}, "nats": &fakeSink{}},
		&mover.Options{BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Logger: discardLogger()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return m
}

// TestMoverMetrics: a real mover over a real queue, with fake sinks that
// deliver, retry and dead-letter; the exported counters match what the
// sinks were made to do, per sink, and the queue's metrics agree.
func TestMoverMetrics(t *testing.T) {
	ctx := context.Background()
	db, q := openQueue(t, nil)
	m := startMover(t, q)
	c, err := metrics.NewCollector(&metrics.Options{
		Queues: map[string]*effectqueue.Queue{"main": q},
		Movers: map[string]metrics.Mover{"main": m},
	})
	require.NoError(t, err)

	enqueue(t, db, q, "s3.put", "a", "b", "flaky", "bad")
	enqueue(t, db, q, "nats.publish", "x", "y")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, m.WaitDrained(wctx))
	// WaitDrained returns when the queue is empty, which can be just before
	// the mover counts the last outcome (it counts a dead letter after
	// writing it): wait for the counts, then compare everything.
	require.Eventually(t, func() bool {
		st := m.Stats()
		return st.Delivered == 5 && st.DeadLettered == 1
	}, 10*time.Second, time.Millisecond, "the mover counts 5 delivered and 1 dead-lettered")

	want := `
# HELP zest_mover_deliveries_total Delivery outcomes by sink: delivered (confirmed), retried (failed, will retry), dead_lettered.
# TYPE zest_mover_deliveries_total counter
zest_mover_deliveries_total{outcome="dead_lettered",queue="main",sink="nats"} 0
zest_mover_deliveries_total{outcome="dead_lettered",queue="main",sink="s3"} 1
zest_mover_deliveries_total{outcome="delivered",queue="main",sink="nats"} 2
zest_mover_deliveries_total{outcome="delivered",queue="main",sink="s3"} 3
zest_mover_deliveries_total{outcome="retried",queue="main",sink="nats"} 0
zest_mover_deliveries_total{outcome="retried",queue="main",sink="s3"} 1
# HELP zest_mover_in_flight Entries being applied to a sink now.
# TYPE zest_mover_in_flight gauge
zest_mover_in_flight{queue="main"} 0
# HELP zest_mover_lanes_blocked Ordering keys whose head entry is failing and waiting to be retried.
# TYPE zest_mover_lanes_blocked gauge
zest_mover_lanes_blocked{queue="main"} 0
# HELP zest_mover_paused 1 if an operator paused the mover.
# TYPE zest_mover_paused gauge
zest_mover_paused{queue="main"} 0
# HELP zest_mover_state_write_retries_total Failed writes of the mover's own state (acks, dead letters) that were retried.
# TYPE zest_mover_state_write_retries_total counter
zest_mover_state_write_retries_total{queue="main"} 0
# HELP zest_mover_superseded_total Entries skipped because a newer entry of the same key replaced them (Coalesce).
# TYPE zest_mover_superseded_total counter
zest_mover_superseded_total{queue="main"} 0
# HELP zest_queue_dead_letters Dead letters waiting for an operator.
# TYPE zest_queue_dead_letters gauge
zest_queue_dead_letters{queue="main"} 1
# HELP zest_queue_depth Committed entries not yet acked or dead-lettered.
# TYPE zest_queue_depth gauge
zest_queue_depth{queue="main"} 0
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"zest_mover_deliveries_total", "zest_mover_in_flight", "zest_mover_lanes_blocked", "zest_mover_paused",
		"zest_mover_state_write_retries_total", "zest_mover_superseded_total",
		"zest_queue_dead_letters", "zest_queue_depth"))

	// One latency observation per delivery, in seconds: the sample counts
	// match the deliveries, and the sums are positive and below the test's
	// running time.
	counts := gatherValues(t, c, "zest_mover_delivery_duration_seconds")
	assert.Equal(t, map[string]float64{`queue="main",sink="nats"`: 2, `queue="main",sink="s3"`: 3}, counts)
	h := histogramOf(t, c, "zest_mover_delivery_duration_seconds", "s3")
	assert.Greater(t, h.GetSampleSum(), 0.0)
	assert.Less(t, h.GetSampleSum(), 30.0*3)
	var last uint64
	for _, b := range h.GetBucket() {
		assert.GreaterOrEqual(t, b.GetCumulativeCount(), last, "buckets are cumulative")
		last = b.GetCumulativeCount()
	}
	assert.LessOrEqual(t, last, h.GetSampleCount())

	// Paused, and a lane blocked by a key that keeps failing.
	m.Pause()
	assert.Equal(t, 1.0, gatherValues(t, c, "zest_mover_paused")[`queue="main"`])
	m.Resume()
	enqueue(t, db, q, "s3.put", "stuck")
	require.Eventually(t, func() bool { return m.Stats().LanesBlocked == 1 }, 30*time.Second, time.Millisecond,
		"the stuck key's lane is reported blocked (it stays so: its retry hangs)")
	assert.Equal(t, 1.0, gatherValues(t, c, "zest_mover_lanes_blocked")[`queue="main"`])
	assert.Equal(t, 1.0, gatherValues(t, c, "zest_queue_depth")[`queue="main"`])
}
