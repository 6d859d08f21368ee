package mover

import (
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Mover's counters. Counters count from the
// Mover's creation; they are not persisted.
type Stats struct {
	// Delivered counts entries the sinks confirmed.
	Delivered uint64
	// Retries counts failed attempts that were retried.
	Retries uint64
	// DeadLettered counts entries set aside.
	DeadLettered uint64
	// Superseded counts entries skipped because a newer one replaced them.
	Superseded uint64
	// StateWriteRetries counts failed writes of the mover's own state to
	// the queue (acks, dead letters) that were retried.
	StateWriteRetries uint64
	// InFlight is the number of entries being applied now.
	InFlight int64
	// Buffered is the number of entries read and not yet acked or
	// dead-lettered.
	Buffered int
	// LanesBlocked is the number of ordering keys whose first entry is
	// failing (see Lanes).
	LanesBlocked int
	// Paused reports whether the mover is paused (see Pause).
	Paused bool
	// Depth is the queue's pending entries; Lag the age of the oldest.
	Depth int64
	Lag   time.Duration
	// LatencyP50 and LatencyP99 are percentiles of the time from commit to
	// confirmation, over the last 4,096 to about 8,192 deliveries, from a
	// histogram whose buckets are 1/16 of their value wide: within 3.2% (1/32) of
	// the exact percentile (durations from 73 minutes up report 73
	// minutes).
	LatencyP50, LatencyP99 time.Duration
	// BySink holds per-sink counters, by the name the sink was given in
	// New's map. Entries with no sink are counted only in the totals.
	BySink map[string]SinkStats
}

// SinkStats are the counters of one sink.
type SinkStats struct {
	Delivered, Retries, DeadLettered uint64
	// Latency is the time from commit to the sink's confirmation.
	Latency Histogram
}

// Histogram is a snapshot of a latency distribution in fixed buckets,
// shaped for Prometheus (which wants cumulative counts: add them up).
type Histogram struct {
	// Bounds are the buckets' upper bounds, in seconds, increasing.
	Bounds []float64
	// Counts holds the observations per bucket, not cumulative:
	// Counts[i] counts values <= Bounds[i] and > Bounds[i-1];
	// Counts[len(Bounds)] counts values above the last bound.
	Counts []uint64
	// Count is the number of observations, Sum their total in seconds.
	Count uint64
	Sum   float64
}

// latencyBounds are the histogram buckets, in seconds: from a local
// store's milliseconds to an outage's minutes.
var latencyBounds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// histogram is a lock-free latency histogram.
type histogram struct {
	counts [17]atomic.Uint64 // len(latencyBounds)+1
	sumNs  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i, _ := slices.BinarySearch(latencyBounds, s)
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

func (h *histogram) snapshot() Histogram {
	r := Histogram{Bounds: slices.Clone(latencyBounds), Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		r.Counts[i] = h.counts[i].Load()
		r.Count += r.Counts[i]
	}
	r.Sum = time.Duration(h.sumNs.Load()).Seconds()
	return r
}

// sinkCounters are one sink's counters.
type sinkCounters struct {
	delivered, retries, deadLettered atomic.Uint64
	latency                          histogram
}

type counters struct {
	delivered, retries, deadLettered, superseded, stateRetries atomic.Uint64
	inFlight                                                   atomic.Int64

	// lat holds the recent delivery latencies for LatencyP50 and
	// LatencyP99: the histogram being filled and the last full one. The
	// record path adds to atomics, and a full histogram is replaced (never
	// cleared) by a new pair, so a reader sees counts that only grow and
	// never waits for a delivery, nor a delivery for a reader.
	lat atomic.Pointer[latencyPair]
}

// latencyWindow is how many deliveries fill one latency histogram: the
// percentiles are over the last latencyWindow to about 2×latencyWindow
// deliveries (more if the delivery that fills a histogram is slow to
// install the next, as deliveries meanwhile still add to the full one).
const latencyWindow = 4096

func (c *counters) init() { c.lat.Store(&latencyPair{cur: new(latencyCounts)}) }

// latency records one delivery's time from commit to confirmation.
func (c *counters) latency(d time.Duration) {
	h := c.lat.Load().cur
	h.buckets[latencyBucket(d)].Add(1)
	// Exactly one delivery sees its histogram's count reach latencyWindow,
	// so the pairs are replaced one at a time, in order. Deliveries that
	// loaded the old pair before that still add to its histogram, now the
	// previous one: they are counted, not lost.
	if h.n.Add(1) == latencyWindow {
		c.lat.Store(&latencyPair{cur: new(latencyCounts), prev: h})
	}
}

// latencyPair is the latency histogram being filled and the one before it
// (nil until the first is full).
type latencyPair struct{ cur, prev *latencyCounts }

// latencyCounts is a log-linear histogram of durations in nanoseconds:
// values below 2×latencySub exactly, then latencySub buckets per power of
// two, so a bucket is at most 1/latencySub of its lower bound wide. Values
// from 2^latencyMaxExp ns (about 73 minutes) up share the last bucket.
type latencyCounts struct {
	n       atomic.Uint64 // observations started (the buckets may lag by those in progress)
	buckets [latencyBuckets]atomic.Uint64
}

const (
	latencySubBits = 4
	latencySub     = 1 << latencySubBits // buckets per power of two
	latencyMaxExp  = 42
	// latencyBuckets is the index of 2^latencyMaxExp, plus one.
	latencyBuckets = (latencyMaxExp-latencySubBits)*latencySub + latencySub + 1
)

// latencyBucket returns the bucket of d: the values of bucket i are
// latencyLow(i) <= d < latencyLow(i+1).
func latencyBucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 2*latencySub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // 2^e <= v < 2^(e+1)
	if e >= latencyMaxExp {
		return latencyBuckets - 1
	}
	sub := (v >> (e - latencySubBits)) & (latencySub - 1)
	return (e-latencySubBits)*latencySub + int(sub) + latencySub
}

// latencyLow returns the smallest duration in bucket i.
func latencyLow(i int) time.Duration {
	if i < 2*latencySub {
		return time.Duration(i)
	}
	e := i/latencySub + latencySubBits - 1
	sub := i % latencySub
	return time.Duration(uint64(latencySub+sub) << (e - latencySubBits))
}

// latencyValue is what a percentile that falls in bucket i reports: the
// middle of the bucket, within 1/(2×latencySub) (1/32) of every value in
// it; the last bucket, which has no upper bound, reports its lower bound.
func latencyValue(i int) time.Duration {
	lo := latencyLow(i)
	if i >= latencyBuckets-1 {
		return lo
	}
	return lo + (latencyLow(i+1)-lo-1)/2
}

// percentiles returns the 50th and 99th percentiles of the recent
// latencies (0 if none): the values of rank ⌊n/2⌋ and ⌊99n/100⌋ (counting
// from 0) in sorted order, to within latencyValue's precision.
func (c *counters) percentiles() (p50, p99 time.Duration) {
	p := c.lat.Load()
	if p == nil {
		return 0, 0
	}
	var counts [latencyBuckets]uint64
	var n uint64
	for _, h := range [2]*latencyCounts{p.cur, p.prev} {
		if h == nil {
			continue
		}
		for i := range h.buckets {
			v := h.buckets[i].Load()
			counts[i] += v
			n += v
		}
	}
	if n == 0 {
		return 0, 0
	}
	r50, r99 := n/2, n*99/100
	var seen uint64
	found50 := false
	for i, v := range counts {
		seen += v
		if !found50 && seen > r50 {
			p50, found50 = latencyValue(i), true
		}
		if seen > r99 {
			return p50, latencyValue(i)
		}
	}
	panic("unreachable: ranks below the total count")
}

// Stats returns the mover's counters. It is cheap enough for every metrics
// scrape: it takes the mover's lock briefly, reads the queue's Depth and
// OldestAge, and reads the latency histograms' atomics (no copy or sort of
// the latencies; recording a latency takes no lock).
func (m *Mover) Stats() Stats {
	s := Stats{
		Delivered:         m.stats.delivered.Load(),
		Retries:           m.stats.retries.Load(),
		DeadLettered:      m.stats.deadLettered.Load(),
		Superseded:        m.stats.superseded.Load(),
		StateWriteRetries: m.stats.stateRetries.Load(),
		InFlight:          m.stats.inFlight.Load(),
		Depth:             m.q.Depth(),
		Lag:               m.q.OldestAge(),
		BySink:            make(map[string]SinkStats, len(m.sinks)),
	}
	for _, sk := range m.sinks {
		s.BySink[sk.name] = SinkStats{
			Delivered:    sk.stats.delivered.Load(),
			Retries:      sk.stats.retries.Load(),
			DeadLettered: sk.stats.deadLettered.Load(),
			Latency:      sk.stats.latency.snapshot(),
		}
	}
	m.mu.Lock()
	s.Buffered = m.mu.buffered
	s.LanesBlocked = m.mu.failing
	s.Paused = m.mu.paused
	m.mu.Unlock()
	s.LatencyP50, s.LatencyP99 = m.stats.percentiles()
	return s
}
