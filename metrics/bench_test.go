package metrics_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// okSink confirms every delivery at once.
type okSink struct{}

func (okSink) Apply(context.Context, mover.Delivery) error { return nil }

// benchFixture is what a production process has: a DB, a durable queue
// with dead letters waiting, a mover draining the queue, and a collector
// of all three served by promhttp on a real HTTP server.
type benchFixture struct {
	db    *stm.DB
	q     *effectqueue.Queue
	bags  *table.Table[int, int]
	reg   *prometheus.Registry
	url   string
	close func()
}

// benchWarmDeliveries is how many entries the fixture's mover delivers
// before a benchmark starts: two windows of its latency percentiles.
const benchWarmDeliveries = 2 * 4096

var benchDeadLetters = flag.Int("scrape.dead", 100, "dead letters in the benchmarks' queue")

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	db, q := openQueue(b, nil)
	bags, err := table.New[int, int](db, "bags")
	require.NoError(b, err)
	keys := make([]string, *benchDeadLetters)
	for i := range keys {
		keys[i] = fmt.Sprintf("dead/%d", i)
	}
	if len(keys) > 0 {
		enqueue(b, db, q, "s3.put", keys...)
		deadLetterAll(b, q)
	}
	m, err := mover.New(q, map[string]mover.Sink{"s3": okSink{}}, &mover.Options{Logger: discardLogger()})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	// A mover that has run a while: its latency percentiles are over a
	// full window (mover.Stats reads them on every scrape).
	for i := 0; i < benchWarmDeliveries; i += 64 {
		require.NoError(b, db.Run(ctx, func(tx *stm.Tx) error {
			for j := range 64 {
				if err := q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: fmt.Sprint("warm/", j), Payload: []byte("receipt")}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(b, m.WaitDrained(ctx))
	c, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Queues: map[string]*effectqueue.Queue{"main": q},
		Movers: map[string]metrics.Mover{"main": m},
	})
	require.NoError(b, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &benchFixture{db: db, q: q, bags: bags, reg: reg, url: srv.URL, close: func() {
		srv.Close()
		cancel()
		<-done
	}}
}

// scrape GETs the metrics page as Prometheus does (gzip accepted) and reads
// it to the end. The body is not decompressed: that is the scraper's work,
// in another process.
func scrape(url string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport leaves the body compressed
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape: %s", resp.Status)
	}
	if resp.Header.Get("Content-Encoding") != "gzip" {
		return fmt.Errorf("scrape: not compressed (%q)", resp.Header.Get("Content-Encoding"))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

var scrapeRounds = flag.Int("scrape.rounds", 1, "BenchmarkCommitsWhileScraped: alternating rounds of no scrape and a scrape every 100 ms")

// BenchmarkCommitsWhileScraped measures durable commits (a table update and
// an Enqueue, fsynced, from 4×GOMAXPROCS goroutines, with a mover draining
// the queue) with no scrape, and with a Prometheus scrape over HTTP every
// 100 ms. The two alternate, round after round (-scrape.rounds), each on a
// fresh queue, so that a machine whose load drifts affects both alike:
//
//	go test -run '^$' -bench CommitsWhileScraped -benchmem -benchtime 2s -v ./metrics -args -scrape.rounds=10 | tee out.txt
//	benchstat -col /scrape -ignore /round out.txt
//
// The scraped rows report how many scrapes ran and their mean duration; the
// log gives the ratio of each round's pair and their median.
func BenchmarkCommitsWhileScraped(b *testing.B) {
	var ratios []float64
	for round := 1; round <= *scrapeRounds; round++ {
		var nsPerOp [2]float64
		for i, every := range []time.Duration{0, 100 * time.Millisecond} {
			name := fmt.Sprintf("round=%d/scrape=none", round)
			if every > 0 {
				name = fmt.Sprintf("round=%d/scrape=%s", round, every)
			}
			b.Run(name, func(b *testing.B) {
				commitsWhileScraped(b, every)
				// The last call, with the largest b.N, is the one reported.
				nsPerOp[i] = float64(b.Elapsed()) / float64(b.N)
			})
		}
		ratios = append(ratios, nsPerOp[1]/nsPerOp[0])
	}
	if len(ratios) > 1 {
		r := slices.Sorted(slices.Values(ratios))
		median := (r[(len(r)-1)/2] + r[len(r)/2]) / 2
		b.Logf("ns/op scraped ÷ ns/op not scraped, by round: %.3f; median %.3f", ratios, median)
	}
}

func commitsWhileScraped(b *testing.B, every time.Duration) {
	f := newBenchFixture(b)
	defer f.close()
	stop := make(chan struct{})
	var scrapes, scrapeTime atomic.Int64
	var scrapeErr error
	var wg sync.WaitGroup
	ctx := context.Background()
	b.ResetTimer()
	if every > 0 {
		wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				start := time.Now()
				if err := scrape(f.url); err != nil {
					scrapeErr = err
					return
				}
				scrapeTime.Add(int64(time.Since(start)))
				scrapes.Add(1)
			}
		})
	}
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			k := r.IntN(1024)
			err := f.db.Run(ctx, func(tx *stm.Tx) error {
				v, _ := f.bags.Get(tx, k)
				f.bags.Put(tx, k, v+1)
				return f.q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: fmt.Sprint("bags/", k), Payload: []byte("receipt")})
			})
			if err != nil {
				b.Error(err) // Error, not Fatal: this is not the benchmark's goroutine
				return
			}
		}
	})
	b.StopTimer()
	close(stop)
	wg.Wait()
	require.NoError(b, scrapeErr)
	if every > 0 {
		n := scrapes.Load()
		b.ReportMetric(float64(n), "scrapes")
		if n > 0 {
			b.ReportMetric(float64(scrapeTime.Load())/float64(n)/1e6, "ms/scrape")
		}
	}
}

var (
	scrapeWindow = flag.Duration("scrape.window", time.Second, "BenchmarkCommitsScrapeWindows: length of one window")
	scrapeEvery  = flag.Duration("scrape.every", 100*time.Millisecond, "BenchmarkCommitsScrapeWindows: time between scrapes in scraped windows")
)

// BenchmarkCommitsScrapeWindows measures the same commits as
// BenchmarkCommitsWhileScraped in one continuous run on one queue, with a
// scrape every 100 ms (-scrape.every) switched on and off in alternating
// windows (-scrape.window, 1 s by default; the order alternates, off-on
// then on-off). Windows next to each other share the machine's load, so
// their ratio is steadier than that of separate runs on a shared machine.
// One op is one pair of windows:
//
//	go test -run '^$' -bench CommitsScrapeWindows -benchtime 60x -count 3 ./metrics
//
// It reports commits/s in each kind of window, their ratio (scraped ÷ not
// scraped, from the totals), the median of the pairs' ratios with a 95%
// confidence interval for that median (from the order statistics of the
// pairs' ratios: no assumption about their distribution), and the
// process's CPU time per commit in each kind of window (cpu-ratio: scraped
// ÷ not scraped), which the load of other processes disturbs less, and
// the extra CPU time per scrape. BenchmarkScrape gives the CPU time and
// allocations of one scrape alone, for the arithmetic of what a scrape
// every 100 ms can cost at most. -scrape.every=10ms gives ten times the
// dose, for an effect that stands out of a noisy machine's noise.
func BenchmarkCommitsScrapeWindows(b *testing.B) {
	f := newBenchFixture(b)
	defer f.close()
	ctx := context.Background()
	stop := make(chan struct{})
	var commits atomic.Int64
	var on atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for w := range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 0))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := r.IntN(1024)
				err := f.db.Run(ctx, func(tx *stm.Tx) error {
					v, _ := f.bags.Get(tx, k)
					f.bags.Put(tx, k, v+1)
					return f.q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: fmt.Sprint("bags/", k), Payload: []byte("receipt")})
				})
				if err != nil {
					fail(err)
					return
				}
				commits.Add(1)
			}
		})
	}
	var scrapes atomic.Int64
	wg.Go(func() {
		t := time.NewTicker(*scrapeEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if !on.Load() {
				continue
			}
			if err := scrape(f.url); err != nil {
				fail(err)
				return
			}
			scrapes.Add(1)
		}
	})
	// window returns the commits made during one window with the scrape
	// on or off, and the CPU time the process used meanwhile.
	window := func(scraping bool) (commitsDone float64, cpu time.Duration) {
		on.Store(scraping)
		c0, cpu0 := commits.Load(), processCPU(b)
		time.Sleep(*scrapeWindow) // the measurement window, not a synchronisation
		return float64(commits.Load() - c0), processCPU(b) - cpu0
	}
	window(false) // warm up
	b.ResetTimer()
	var sumOff, sumOn float64
	var cpuOff, cpuOn time.Duration
	var ratios []float64
	for i := range b.N {
		var off, scraped float64
		var offCPU, onCPU time.Duration
		if i%2 == 0 {
			off, offCPU = window(false)
			scraped, onCPU = window(true)
		} else {
			scraped, onCPU = window(true)
			off, offCPU = window(false)
		}
		sumOff += off
		sumOn += scraped
		cpuOff += offCPU
		cpuOn += onCPU
		if off > 0 {
			ratios = append(ratios, scraped/off)
		}
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	require.Empty(b, errs)
	secs := scrapeWindow.Seconds() * float64(b.N)
	b.ReportMetric(sumOff/secs, "commits/s-none")
	b.ReportMetric(sumOn/secs, "commits/s-scraped")
	if sumOff > 0 {
		b.ReportMetric(sumOn/sumOff, "ratio")
	}
	if len(ratios) > 0 {
		med, lo, hi := medianCI(ratios)
		b.ReportMetric(med, "median-pair-ratio")
		if lo > 0 {
			b.ReportMetric(lo, "median-ci95-lo")
			b.ReportMetric(hi, "median-ci95-hi")
		}
	}
	b.ReportMetric(float64(scrapes.Load())/secs, "scrapes/s-scraped")
	if sumOff > 0 && sumOn > 0 {
		// CPU per commit counts the whole process (committers, writer,
		// mover, and in scraped windows the scrapes): what a scrape adds,
		// measured in the currency the other processes on the machine
		// disturb least.
		perOff := float64(cpuOff.Microseconds()) / sumOff
		perOn := float64(cpuOn.Microseconds()) / sumOn
		b.ReportMetric(perOff, "cpu-µs/commit-none")
		b.ReportMetric(perOn, "cpu-µs/commit-scraped")
		b.ReportMetric(perOn/perOff, "cpu-ratio")
		// How busy the process kept the machine's cores in windows
		// without scrapes: below GOMAXPROCS, commits wait on the disk or
		// on the other processes of the machine, not on their own CPU.
		b.ReportMetric(cpuOff.Seconds()/secs, "cores-busy-none")
	}
	if n := scrapes.Load(); n > 0 {
		// The process's extra CPU time per scrape, in place: the
		// handler's, the in-process scraper's, and whatever the scrapes
		// cost the rest (wake-ups, GC). Noisy: a difference of two sums.
		b.ReportMetric(float64((cpuOn-cpuOff).Microseconds())/float64(n), "cpu-µs/scrape-in-place")
	}
}

// medianCI returns the median of xs and a 95% confidence interval for the
// median of the distribution they were drawn from: the order statistics
// of ranks k and n+1-k, where k is the rank below which a binomial(n, ½)
// falls with probability 2.5% (normal approximation). It needs about 9
// values; for fewer it returns lo = hi = 0.
func medianCI(xs []float64) (median, lo, hi float64) {
	r := slices.Sorted(slices.Values(xs))
	n := len(r)
	median = (r[(n-1)/2] + r[n/2]) / 2
	k := int(math.Floor((float64(n) - 1.96*math.Sqrt(float64(n))) / 2)) // 1-based rank
	if k < 1 {
		return median, 0, 0
	}
	return median, r[k-1], r[n-k]
}

// processCPU returns the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	d := testutil.CPUTime()
	if d == 0 {
		b.Fatal("metrics: the process's CPU time cannot be read here")
	}
	return d
}

// BenchmarkScrape measures one scrape over HTTP of the fixture (a DB,
// a queue with 100 dead letters, a mover whose latency window is full),
// beside one gather without HTTP and text encoding. B/op and allocs/op are
// the whole process's during the loop: the handler's, and the client's
// reading of the response. cpu-µs/op is the process's CPU time per scrape
// (getrusage), and cpu-%-at-10/s what ten scrapes a second take of the
// machine's GOMAXPROCS cores:
//
//	go test -run '^$' -bench 'Scrape$' -benchmem -count 5 ./metrics
func BenchmarkScrape(b *testing.B) {
	f := newBenchFixture(b)
	defer f.close()
	report := func(b *testing.B, cpu0 time.Duration) {
		perOp := float64((processCPU(b) - cpu0).Nanoseconds()) / 1e3 / float64(b.N)
		b.ReportMetric(perOp, "cpu-µs/op")
		b.ReportMetric(perOp*10/(float64(runtime.GOMAXPROCS(0))*1e6)*100, "cpu-%-at-10/s")
	}
	b.Run("gather", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			if _, err := f.reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run("http", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			if err := scrape(f.url); err != nil {
				b.Fatal(err)
			}
		}
		// The handler's work (gather, text encoding, gzip) and the
		// client's reading, plus whatever the idle mover and Badger do
		// meanwhile.
		report(b, cpu0)
	})
}

// BenchmarkDeadLetterCount measures a gather of a collector of one queue
// (depth, oldest age, dead letters) by the number of dead letters and the
// size of their payloads. The queue keeps the count, so the cost should
// not grow with either (a scrape used to read them all).
func BenchmarkDeadLetterCount(b *testing.B) {
	for _, payload := range []int{16, 64 << 10} {
		for _, n := range []int{0, 1000} {
			b.Run(fmt.Sprintf("payload=%d/dead=%d", payload, n), func(b *testing.B) {
				db, q := openQueue(b, nil)
				body := make([]byte, payload)
				batch := max(1, min(50, (512<<10)/payload)) // entries per transaction, within one atomic write
				for i := 0; i < n; i += batch {
					require.NoError(b, db.Run(context.Background(), func(tx *stm.Tx) error {
						for j := i; j < min(n, i+batch); j++ {
							if err := q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: fmt.Sprint("k", j), Payload: body}); err != nil {
								return err
							}
						}
						return nil
					}))
				}
				deadLetterAll(b, q)
				c, err := metrics.NewCollector(&metrics.Options{Queues: map[string]*effectqueue.Queue{"main": q}})
				require.NoError(b, err)
				reg := prometheus.NewRegistry()
				reg.MustRegister(c)
				b.ReportAllocs()
				cpu0 := processCPU(b)
				for b.Loop() {
					if _, err := reg.Gather(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// TestMedianCI checks the benchmark's statistics on known inputs: the
// median, and the interval's order statistics (ranks 9 and 22 of 30).
func TestMedianCI(t *testing.T) {
	xs := make([]float64, 30)
	for i := range xs {
		xs[i] = float64(30 - i) // unsorted on purpose
	}
	med, lo, hi := medianCI(xs)
	require.Equal(t, 15.5, med)
	require.Equal(t, 9.0, lo)
	require.Equal(t, 22.0, hi)
	med, lo, hi = medianCI([]float64{3, 1, 2})
	require.Equal(t, 2.0, med)
	require.Zero(t, lo, "too few values for an interval")
	require.Zero(t, hi)
}
