package metrics

import (
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/zest-stm/zest/mover"
)

// collectOne sends one metric through a sender and returns what the
// registry would read from it.
func collectOne(t *testing.T, lc *labelCache, send func(*sender)) *dto.Metric {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	send(&sender{ch: ch, labels: lc})
	m := <-ch
	var out dto.Metric
	require.NoError(t, m.Write(&out))
	return &out
}

// TestSamplesMatchConstMetrics: a counter, gauge or histogram sent with
// cached label pairs reads exactly as the client library's constant metric
// of the same description and values, the first time (cache miss) and
// after (hit), and a series' pairs are built once.
func TestSamplesMatchConstMetrics(t *testing.T) {
	d := newDescs()
	var lc labelCache
	for round := range 2 {
		for _, labels := range [][]string{{"main", "s3", "delivered"}, {"main", "nats", "retried"}, {"other", "s3", "dead_lettered"}} {
			got := collectOne(t, &lc, func(s *sender) { s.counter(d.moverDeliveries, 42, labels...) })
			want := prometheus.MustNewConstMetric(d.moverDeliveries, prometheus.CounterValue, 42, labels...)
			var w dto.Metric
			require.NoError(t, want.Write(&w))
			assert.True(t, proto.Equal(&w, got), "round %d %v: got %v, want %v", round, labels, got, &w)
		}
		got := collectOne(t, &lc, func(s *sender) { s.gauge(d.queueDepth, 7.5, "main") })
		want := prometheus.MustNewConstMetric(d.queueDepth, prometheus.GaugeValue, 7.5, "main")
		var w dto.Metric
		require.NoError(t, want.Write(&w))
		assert.True(t, proto.Equal(&w, got), "gauge: got %v, want %v", got, &w)

		got = collectOne(t, &lc, func(s *sender) { s.counter(d.commits, 3) })
		want = prometheus.MustNewConstMetric(d.commits, prometheus.CounterValue, 3)
		w = dto.Metric{}
		require.NoError(t, want.Write(&w))
		assert.True(t, proto.Equal(&w, got), "no labels: got %v, want %v", got, &w)

		h := mover.Histogram{Bounds: []float64{0.1, 1, 10}, Counts: []uint64{2, 0, 5, 1}, Count: 8, Sum: 23.5}
		got = collectOne(t, &lc, func(s *sender) { s.histogram(d.moverDuration, h, "main", "s3") })
		wantH := prometheus.MustNewConstHistogram(d.moverDuration, 8, 23.5, map[float64]uint64{0.1: 2, 1: 2, 10: 7}, "main", "s3")
		w = dto.Metric{}
		require.NoError(t, wantH.Write(&w))
		assert.True(t, proto.Equal(&w, got), "histogram: got %v, want %v", got, &w)
	}
	assert.Len(t, lc.m, 6, "one entry per series")
}

// TestSenderRefuses: wrong label counts and values that are not UTF-8 give
// the library's error as a failed metric, and are not cached; a histogram
// of a shape the collector does not understand is not sent.
func TestSenderRefuses(t *testing.T) {
	d := newDescs()
	var lc labelCache
	for _, labels := range [][]string{{}, {"a", "b"}, {"\xff"}} {
		ch := make(chan prometheus.Metric, 1)
		(&sender{ch: ch, labels: &lc}).gauge(d.queueDepth, 1, labels...)
		err := (<-ch).Write(&dto.Metric{})
		assert.Error(t, err, "labels %q", labels)
	}
	ch := make(chan prometheus.Metric, 1)
	(&sender{ch: ch, labels: &lc}).counter(d.commits, 1, "1", "2", "3", "4")
	assert.Error(t, (<-ch).Write(&dto.Metric{}), "four labels")
	(&sender{ch: ch, labels: &lc}).histogram(d.moverDuration, mover.Histogram{Bounds: []float64{1}, Counts: []uint64{1}}, "main", "s3")
	assert.Empty(t, ch, "a histogram without its +Inf count is not sent")
	assert.Empty(t, lc.m)
}

// TestLabelCacheBounded: a source whose label values never repeat (a
// misuse the docs warn about) does not grow the cache past
// maxCachedSeries, and its series are still exported right, also from
// concurrent scrapes.
func TestLabelCacheBounded(t *testing.T) {
	var mu sync.Mutex
	n := 0
	c, err := NewCollector(&Options{Sagas: SagaSourceFunc(func() map[string]int64 {
		mu.Lock()
		defer mu.Unlock()
		n++
		return map[string]int64{fmt.Sprint("state", n): int64(n)}
	})})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for g := range errs {
		wg.Go(func() {
			for range maxCachedSeries/2 + 100 {
				mfs, err := reg.Gather()
				if err != nil {
					errs[g] = err
					return
				}
				m := mfs[0].GetMetric()[0]
				if want := "state" + fmt.Sprint(m.GetGauge().GetValue()); m.GetLabel()[0].GetValue() != want {
					errs[g] = fmt.Errorf("series %v has value %v", m.GetLabel(), m.GetGauge().GetValue())
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Len(t, c.labels.m, maxCachedSeries)
}
