package metrics_test

import (
	"bytes"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
)

// panicMover is a Mover the application wrote, whose Stats panics while
// armed.
type panicMover struct{ armed *atomic.Bool }

func (m panicMover) Stats() mover.Stats {
	if m.armed.Load() {
		panic("mover stats boom")
	}
	return mover.Stats{InFlight: 2}
}

// TestSourcePanics: a panic in any source the application supplied (a
// Mover, a SagaSource, an IdemSource) fails that source's metrics in the
// scrape, is logged, and leaves the process, the other metrics and the
// next scrape alone.
func TestSourcePanics(t *testing.T) {
	db, err := stm.Open(nil)
	require.NoError(t, err)
	var armed atomic.Bool
	armed.Store(true)
	var logs bytes.Buffer
	c, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Movers: map[string]metrics.Mover{"m": panicMover{&armed}},
		Sagas: metrics.SagaSourceFunc(func() map[string]int64 {
			if armed.Load() {
				panic("sagas boom")
			}
			return map[string]int64{"stuck": 1}
		}),
		Idem: metrics.IdemSourceFunc(func() uint64 {
			if armed.Load() {
				var m map[string]int
				m["nil map"]++ // a runtime error, not only a panic(value)
			}
			return 7
		}),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))

	mfs, err := reg.Gather()
	require.Error(t, err)
	// The registry gathers the three failures into one prometheus.MultiError.
	var multi prometheus.MultiError
	require.ErrorAs(t, err, &multi)
	require.Len(t, multi, 3)
	for _, e := range multi {
		assert.ErrorIs(t, e, metrics.ErrSourcePanicked)
	}
	for _, s := range []string{"Movers[m].Stats", "Sagas.SagasByState", "Idem.Replays", "mover stats boom", "sagas boom", "nil map"} {
		assert.Contains(t, err.Error(), s)
		assert.Contains(t, logs.String(), s)
	}
	assert.Contains(t, valuesOf(mfs, "zest_stm_commits_total"), "", "the DB's metrics are still collected")

	armed.Store(false)
	mfs, err = reg.Gather()
	require.NoError(t, err, "the next scrape works")
	assert.Equal(t, 2.0, valuesOf(mfs, "zest_mover_in_flight")[`queue="m"`])
	assert.Equal(t, 1.0, valuesOf(mfs, "zest_sagas")[`state="stuck"`])
	assert.Equal(t, 7.0, valuesOf(mfs, "zest_idem_replays_total")[""])
}

// TestInvalidLabelValue: a label value the exposition cannot carry (not
// UTF-8) fails that one series instead of panicking the scrape.
func TestInvalidLabelValue(t *testing.T) {
	c, err := metrics.NewCollector(&metrics.Options{
		Sagas: metrics.SagaSourceFunc(func() map[string]int64 { return map[string]int64{"stuck": 1, "bad\xff": 2} }),
	})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "UTF-8")
	assert.Equal(t, map[string]float64{`state="stuck"`: 1}, valuesOf(mfs, "zest_sagas"))
}

// TestTwoDBsInOneRegistry: two collectors exporting the same series collide
// at registration (so a mistake is seen at start-up, not as a bad scrape);
// registered through prometheus.WrapRegistererWith, as the package doc says,
// they live side by side.
func TestTwoDBsInOneRegistry(t *testing.T) {
	db1, q1 := openQueue(t, nil)
	db2, q2 := openQueue(t, nil)
	enqueue(t, db1, q1, "s3.put", "a")
	c1, err := metrics.NewCollector(&metrics.Options{DB: db1, Queues: map[string]*effectqueue.Queue{"main": q1}})
	require.NoError(t, err)
	c2, err := metrics.NewCollector(&metrics.Options{DB: db2, Queues: map[string]*effectqueue.Queue{"main": q2}})
	require.NoError(t, err)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c1))
	require.Error(t, reg.Register(c2), "the same series twice")

	reg = prometheus.NewPedanticRegistry()
	require.NoError(t, prometheus.WrapRegistererWith(prometheus.Labels{"shard": "1"}, reg).Register(c1))
	require.NoError(t, prometheus.WrapRegistererWith(prometheus.Labels{"shard": "2"}, reg).Register(c2))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{`shard="1"`: 1, `shard="2"`: 0}, valuesOf(mfs, "zest_stm_commits_total"))
	assert.Equal(t, map[string]float64{`queue="main",shard="1"`: 1, `queue="main",shard="2"`: 0}, valuesOf(mfs, "zest_queue_depth"))
}

// TestLintWithMover: the mover's metrics, the histogram included, pass
// promlint too.
func TestLintWithMover(t *testing.T) {
	db, q := openQueue(t, nil)
	m := startMover(t, q)
	enqueue(t, db, q, "s3.put", "a", "bad")
	require.NoError(t, m.WaitDrained(t.Context()))
	c, err := metrics.NewCollector(&metrics.Options{Movers: map[string]metrics.Mover{"main": m}})
	require.NoError(t, err)
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
	assert.Equal(t, 2, testutil.CollectAndCount(c, "zest_mover_delivery_duration_seconds"), "one per sink")
}
