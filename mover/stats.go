package mover

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

type counters struct {
	delivered, retries, deadLettered, superseded atomic.Uint64
	inFlight                                     atomic.Int64

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

// Stats is a snapshot of a Mover's counters.
type Stats struct {
	// Delivered counts entries the sinks confirmed.
	Delivered uint64
	// Retries counts failed attempts that were retried.
	Retries uint64
	// DeadLettered counts entries set aside.
	DeadLettered uint64
	// Superseded counts entries skipped because a newer one replaced them.
	Superseded uint64
	// InFlight is the number of entries being applied now.
	InFlight int64
	// Buffered is the number of entries read and not yet done.
	Buffered int
	// Depth is the queue's pending entries; Lag the age of the oldest.
	Depth int64
	Lag   time.Duration
	// LatencyP50 and LatencyP99 are percentiles of the time from commit to
	// confirmation, over the last 4,096 deliveries.
	LatencyP50, LatencyP99 time.Duration
}

// Stats returns the mover's counters.
func (m *Mover) Stats() Stats {
	s := Stats{
		Delivered:    m.stats.delivered.Load(),
		Retries:      m.stats.retries.Load(),
		DeadLettered: m.stats.deadLettered.Load(),
		Superseded:   m.stats.superseded.Load(),
		InFlight:     m.stats.inFlight.Load(),
		Depth:        m.q.Depth(),
		Lag:          m.q.OldestAge(),
	}
	m.mu.Lock()
	s.Buffered = m.mu.buffered
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
