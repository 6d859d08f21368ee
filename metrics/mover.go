package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zest-stm/zest/mover"
)

// collectMoverSinks sends the per-sink counters and latency histograms of
// one mover, and its blocked lanes.
func collectMoverSinks(ch chan<- prometheus.Metric, d *descs, name string, st mover.Stats) {
	// Interim: mover.Stats has no per-sink split yet; the totals are
	// reported under sink "" until it does.
	counter := func(v uint64, sink, outcome string) {
		ch <- prometheus.MustNewConstMetric(d.moverDeliveries, prometheus.CounterValue, float64(v), name, sink, outcome)
	}
	counter(st.Delivered, "", "delivered")
	counter(st.Retries, "", "retried")
	counter(st.DeadLettered, "", "dead_lettered")
}
