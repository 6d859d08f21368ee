package metrics

import (
	"maps"
	"slices"

	"github.com/zest-stm/zest/mover"
)

// moverOutcomes are the values of the "outcome" label of
// zest_mover_deliveries_total, with the counter each reads.
var moverOutcomes = []struct {
	label string
	value func(mover.SinkStats) uint64
}{
	{"delivered", func(s mover.SinkStats) uint64 { return s.Delivered }},
	{"retried", func(s mover.SinkStats) uint64 { return s.Retries }},
	{"dead_lettered", func(s mover.SinkStats) uint64 { return s.DeadLettered }},
}

func (c *Collector) collectMover(out *sender, name string, m Mover) {
	st := m.Stats()
	out.gauge(c.d.moverLanesBlocked, float64(st.LanesBlocked), name)
	out.gauge(c.d.moverInFlight, float64(st.InFlight), name)
	out.gauge(c.d.moverPaused, boolValue(st.Paused), name)
	out.counter(c.d.moverSuperseded, st.Superseded, name)
	out.counter(c.d.moverStateRetries, st.StateWriteRetries, name)
	for _, sink := range slices.Sorted(maps.Keys(st.BySink)) {
		s := st.BySink[sink]
		for _, o := range moverOutcomes {
			out.counter(c.d.moverDeliveries, o.value(s), name, sink, o.label)
		}
		out.histogram(c.d.moverDuration, s.Latency, name, sink)
	}
}
