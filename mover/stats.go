package mover

import (
	"slices"
	"sync"
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
	// confirmation, over the last 4,096 deliveries.
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

	lat struct {
		sync.Mutex
		ring []time.Duration // the last latencyWindow delivery latencies
		next int
	}
}

const latencyWindow = 4096

func (c *counters) init() { c.lat.ring = make([]time.Duration, 0, latencyWindow) }

func (c *counters) latency(d time.Duration) {
	c.lat.Lock()
	if len(c.lat.ring) < latencyWindow {
		c.lat.ring = append(c.lat.ring, d)
	} else {
		c.lat.ring[c.lat.next] = d
		c.lat.next = (c.lat.next + 1) % latencyWindow
	}
	c.lat.Unlock()
}

// Stats returns the mover's counters. It is cheap enough for every metrics
// scrape: it takes the mover's lock briefly and reads the queue's Depth and
// OldestAge.
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
	m.stats.lat.Lock()
	l := slices.Clone(m.stats.lat.ring)
	m.stats.lat.Unlock()
	if len(l) > 0 {
		slices.Sort(l)
		s.LatencyP50 = l[len(l)/2]
		s.LatencyP99 = l[len(l)*99/100]
	}
	return s
}
