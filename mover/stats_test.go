package mover

import (
	"flag"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var latencySeed = flag.Uint64("latency.seed", 0, "seed of the latency histogram tests (0: pick one and print it)")

// seedOf returns -latency.seed, or a new seed, and logs it for a replay.
func seedOf(t *testing.T) uint64 {
	s := *latencySeed
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (replay: -latency.seed=%d)", s, s)
	return s
}

// TestLatencyBuckets: every duration falls in the bucket whose bounds hold
// it, the buckets tile the range with no gap or overlap, and no bucket is
// wider than 1/16 of its lower bound.
func TestLatencyBuckets(t *testing.T) {
	for i := 0; i < latencyBuckets-1; i++ {
		lo, hi := latencyLow(i), latencyLow(i+1)
		require.Less(t, lo, hi, "bucket %d", i)
		if lo >= 2*latencySub {
			require.LessOrEqual(t, (hi-lo)*latencySub, lo, "bucket %d [%d, %d) too wide", i, lo, hi)
		}
		require.Equal(t, i, latencyBucket(lo), "lower bound of %d", i)
		require.Equal(t, i, latencyBucket(hi-1), "last value of %d", i)
	}
	last := latencyBuckets - 1
	assert.Equal(t, last, latencyBucket(time.Duration(1)<<latencyMaxExp))
	assert.Equal(t, last, latencyBucket(time.Duration(1<<63-1)), "the largest duration")
	assert.Equal(t, 0, latencyBucket(-time.Second), "a negative latency (clock step) counts as 0")
	assert.Equal(t, latencyLow(last), latencyValue(last))

	seed := seedOf(t)
	r := rand.New(rand.NewPCG(seed, 0))
	for range 100_000 {
		d := time.Duration(r.Uint64N(1 << r.IntN(latencyMaxExp+1)))
		i := latencyBucket(d)
		require.LessOrEqual(t, latencyLow(i), d, "seed %d: %d in bucket %d", seed, d, i)
		if i < last {
			require.Less(t, d, latencyLow(i+1), "seed %d: %d in bucket %d", seed, d, i)
		}
	}
}

// exactPercentiles is the model: the values of rank n/2 and 99n/100 of the
// sorted latencies, as Stats computed them from a ring of samples before.
func exactPercentiles(l []time.Duration) (time.Duration, time.Duration) {
	s := slices.Sorted(slices.Values(l))
	return s[len(s)/2], s[len(s)*99/100]
}

// near reports whether got is within the histogram's precision of want:
// 1/32 of want, or exact for values below 2×latencySub.
func near(got, want time.Duration) bool {
	diff := got - want
	if diff < 0 {
		diff = -diff
	}
	return diff*2*latencySub <= want
}

// TestLatencyPercentiles checks the percentiles against the sorted
// latencies of the window the histograms cover: the last latencyWindow
// to 2×latencyWindow-1 deliveries, exactly (n mod latencyWindow) +
// latencyWindow of them once the first histogram filled.
func TestLatencyPercentiles(t *testing.T) {
	seed := seedOf(t)
	dists := []struct {
		name string
		next func(r *rand.Rand) time.Duration
	}{
		{"uniform ms", func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(int64(50 * time.Millisecond))) }},
		{"exponential", func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * float64(20*time.Millisecond)) }},
		{"bimodal tail", bimodal},
		{"tiny ns", func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(40)) }},
		{"constant", func(*rand.Rand) time.Duration { return 7 * time.Millisecond }},
		{"huge", func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(3 * int64(time.Hour))) }},
	}
	for k, dist := range dists {
		name := dist.name
		r := rand.New(rand.NewPCG(seed, uint64(k)))
		next := func() time.Duration { return dist.next(r) }
		t.Run(name, func(t *testing.T) {
			var c counters
			c.init()
			p50, p99 := c.percentiles()
			assert.Zero(t, p50)
			assert.Zero(t, p99)
			var all []time.Duration
			for _, n := range []int{1, 2, 99, 100, 1000, latencyWindow - 1, latencyWindow, latencyWindow + 1, 3*latencyWindow - 7, 5 * latencyWindow} {
				for len(all) < n {
					d := next()
					all = append(all, d)
					c.latency(d)
				}
				window := all
				if n >= latencyWindow {
					window = all[n-(n%latencyWindow+latencyWindow):]
				}
				w50, w99 := exactPercentiles(window)
				got50, got99 := c.percentiles()
				if name == "huge" {
					w50, w99 = min(w50, latencyLow(latencyBuckets-1)), min(w99, latencyLow(latencyBuckets-1))
				}
				assert.True(t, near(got50, w50), "seed %d, %d deliveries: p50 %v, exact %v", seed, n, got50, w50)
				assert.True(t, near(got99, w99), "seed %d, %d deliveries: p99 %v, exact %v", seed, n, got99, w99)
			}
		})
	}
}

// bimodal: 98% fast, 2% slow, so that p50 and p99 land in different modes.
func bimodal(r *rand.Rand) time.Duration {
	if r.IntN(100) < 2 {
		return 2*time.Second + time.Duration(r.Int64N(int64(time.Second)))
	}
	return time.Millisecond + time.Duration(r.Int64N(int64(time.Millisecond)))
}

// TestLatencyConcurrent records from several goroutines while others read:
// a reader never sees a percentile outside the
// recorded values, and the race detector sees the atomics only.
func TestLatencyConcurrent(t *testing.T) {
	var c counters
	c.init()
	const writers, each = 4, 3 * latencyWindow
	lo, hi := time.Millisecond, 9*time.Millisecond
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad []string
	var mu sync.Mutex
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p50, p99 := c.percentiles()
				if p50 == 0 && p99 == 0 {
					continue
				}
				if !(near(p50, lo) || p50 >= lo) || !(near(p99, hi) || p99 <= hi) || p50 > p99 {
					mu.Lock()
					bad = append(bad, p50.String()+" "+p99.String())
					mu.Unlock()
				}
			}
		})
	}
	var writing sync.WaitGroup
	for w := range writers {
		writing.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range each {
				c.latency(lo + time.Duration(r.Int64N(int64(hi-lo))))
			}
		})
	}
	writing.Wait()
	close(stop)
	wg.Wait()
	assert.Empty(t, bad, "percentiles outside [%v, %v]", lo, hi)

	// Histograms are never cleared, so each holds every delivery that
	// added to it: its buckets add up to its count. The previous one holds
	// at least a window (more if the delivery that filled it was slow to
	// install the next pair); the current one less than a window, as
	// whoever filled it has installed the next.
	p := c.lat.Load()
	require.NotNil(t, p.prev)
	var total uint64
	for _, h := range []*latencyCounts{p.cur, p.prev} {
		var sum uint64
		for i := range h.buckets {
			sum += h.buckets[i].Load()
		}
		assert.Equal(t, h.n.Load(), sum, "a histogram's buckets add up to its count")
		total += sum
	}
	assert.GreaterOrEqual(t, p.prev.n.Load(), uint64(latencyWindow))
	assert.Less(t, p.cur.n.Load(), uint64(latencyWindow))
	assert.LessOrEqual(t, total, uint64(writers*each))
}

// BenchmarkLatency: recording a latency (the mover's delivery path) and
// reading the percentiles (every Stats call, so every metrics scrape).
func BenchmarkLatency(b *testing.B) {
	var c counters
	c.init()
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			d := time.Millisecond
			for pb.Next() {
				c.latency(d)
				d += 37 * time.Microsecond
				if d > time.Second {
					d = time.Millisecond
				}
			}
		})
	})
	b.Run("percentiles", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.percentiles()
		}
	})
}
