package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/stm"
)

// TestScrapeOverHTTP registers the collector with a registry, serves it
// with promhttp on a real HTTP server, scrapes it as Prometheus would and
// parses the text back: the values are the DB's, queue's and mover's.
func TestScrapeOverHTTP(t *testing.T) {
	ctx := context.Background()
	db, q := openQueue(t, nil)
	m := startMover(t, q)
	c, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Queues: map[string]*effectqueue.Queue{"main": q},
		Movers: map[string]metrics.Mover{"main": m},
	})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	enqueue(t, db, q, "s3.put", "a", "bad")
	enqueue(t, db, q, "s3.put", "b")
	require.NoError(t, m.WaitDrained(ctx))

	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)

	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf, ok := mfs[name]
		require.True(t, ok, "scrape has %s", name)
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		t.Fatalf("scrape has no %s%v", name, labels)
		return 0
	}
	// Two commits: the mover's acks and dead letters are queue writes, not
	// transactions of the DB.
	assert.Equal(t, 2.0, value("zest_stm_commits_total", nil))
	assert.Equal(t, 0.0, value("zest_queue_depth", map[string]string{"queue": "main"}))
	assert.Equal(t, 1.0, value("zest_queue_dead_letters", map[string]string{"queue": "main"}))
	assert.Equal(t, 2.0, value("zest_mover_deliveries_total", map[string]string{"queue": "main", "sink": "s3", "outcome": "delivered"}))
	assert.Equal(t, 1.0, value("zest_mover_deliveries_total", map[string]string{"queue": "main", "sink": "s3", "outcome": "dead_lettered"}))
	assert.Equal(t, 2.0, value("zest_mover_delivery_duration_seconds", map[string]string{"queue": "main", "sink": "s3"}))
	assert.Equal(t, dto.MetricType_HISTOGRAM, mfs["zest_mover_delivery_duration_seconds"].GetType())
	assert.Equal(t, dto.MetricType_COUNTER, mfs["zest_stm_commits_total"].GetType())
}

// TestConcurrentScrapes: scrapes from several goroutines while several
// goroutines commit durable transactions with entries. Invariants checked:
//   - no scrape fails, and the race detector sees no race;
//   - each scraper sees zest_stm_commits_total and, with no consumer,
//     zest_queue_depth never decrease;
//   - after the commits, the counters equal what was committed.
func TestConcurrentScrapes(t *testing.T) {
	ctx := context.Background()
	db, q := openQueue(t, nil)
	c, err := metrics.NewCollector(&metrics.Options{DB: db, Queues: map[string]*effectqueue.Queue{"main": q}})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	const writers, perWriter, scrapers = 4, 40, 3
	stop := make(chan struct{})
	var scrapeWG sync.WaitGroup
	scrapeErrs := make([]error, scrapers)
	scrapes := make([]int, scrapers)
	for i := range scrapers {
		scrapeWG.Go(func() {
			var lastCommits, lastDepth float64
			for {
				select {
				case <-stop:
					return
				default:
				}
				mfs, err := reg.Gather()
				if err != nil {
					scrapeErrs[i] = err
					return
				}
				scrapes[i]++
				commits := valuesOf(mfs, "zest_stm_commits_total")[""]
				depth := valuesOf(mfs, "zest_queue_depth")[`queue="main"`]
				if commits < lastCommits || depth < lastDepth {
					scrapeErrs[i] = fmt.Errorf("scrape %d went back: commits %v after %v, depth %v after %v",
						scrapes[i], commits, lastCommits, depth, lastDepth)
					return
				}
				lastCommits, lastDepth = commits, depth
			}
		})
	}
	var writeWG sync.WaitGroup
	writeErrs := make([]error, writers)
	for w := range writers {
		writeWG.Go(func() {
			for i := range perWriter {
				err := db.Run(ctx, func(tx *stm.Tx) error {
					return q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: fmt.Sprintf("w%d/%d", w, i), Payload: []byte("x")})
				})
				if err != nil {
					writeErrs[w] = err
					return
				}
			}
		})
	}
	writeWG.Wait()
	close(stop)
	scrapeWG.Wait()
	for _, err := range writeErrs {
		require.NoError(t, err)
	}
	for i, err := range scrapeErrs {
		require.NoError(t, err)
		assert.Positive(t, scrapes[i], "scraper %d ran", i)
	}
	assert.Equal(t, float64(writers*perWriter), gatherValues(t, c, "zest_stm_commits_total")[""])
	assert.Equal(t, float64(writers*perWriter), gatherValues(t, c, "zest_queue_depth")[`queue="main"`])
}

// TestStalledScrapeDoesNotStallCommits: while a scrape is stuck inside a
// source (here a SagaSource that blocks until released, after the DB's and
// the queue's metrics were read), durable commits with entries still
// complete: the collector holds nothing of the engine's across a scrape.
func TestStalledScrapeDoesNotStallCommits(t *testing.T) {
	db, q := openQueue(t, nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	c, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Queues: map[string]*effectqueue.Queue{"main": q},
		Sagas: metrics.SagaSourceFunc(func() map[string]int64 {
			close(entered)
			<-release
			return nil
		}),
	})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	gathered := make(chan error, 1)
	go func() {
		_, err := reg.Gather()
		gathered <- err
	}()
	<-entered
	for i := range 20 {
		enqueue(t, db, q, "s3.put", fmt.Sprint("k", i))
	}
	assert.Equal(t, int64(20), q.Depth())
	select {
	case err := <-gathered:
		t.Fatalf("the scrape ended before it was released: %v", err)
	default:
	}
	close(release)
	require.NoError(t, <-gathered)
}
