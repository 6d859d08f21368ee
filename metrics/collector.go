package metrics

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// Collector exports Zest's state to Prometheus. It reads its sources when
// scraped and keeps no state of its own between scrapes, so nothing in the
// commit path changes for it.
//
// A Collector is safe for concurrent use: a registry may scrape it from
// several goroutines at once.
type Collector struct {
	opts   Options
	queues []string // sorted names, so a scrape's order is stable
	movers []string
	dead   map[string]*deadCounter // by queue name
	d      descs
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector of the sources in opts. It registers
// nothing: register it with the application's registry,
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The queue and mover names in opts are fixed at this call. Two collectors
// of two DBs in one registry need distinguishing labels: register each
// through prometheus.WrapRegistererWith.
func NewCollector(opts *Options) (*Collector, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Collector{
		opts:   o,
		queues: slices.Sorted(maps.Keys(o.Queues)),
		movers: slices.Sorted(maps.Keys(o.Movers)),
		dead:   make(map[string]*deadCounter, len(o.Queues)),
		d:      newDescs(),
	}
	for name, q := range o.Queues {
		c.dead[name] = &deadCounter{q: q, limit: o.MaxDeadLetters}
	}
	return c, nil
}

// Describe sends the descriptions of the metrics that this collector's
// sources export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.d.of(c.opts) {
		ch <- d
	}
}

// Collect reads every source and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if db := c.opts.DB; db != nil {
		c.collectDB(ch, db)
	}
	if len(c.queues) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.ScrapeTimeout)
		defer cancel()
		for _, name := range c.queues {
			c.collectQueue(ctx, ch, name, c.opts.Queues[name])
		}
	}
	for _, name := range c.movers {
		c.collectMover(ch, name, c.opts.Movers[name])
	}
	if s := c.opts.Sagas; s != nil {
		for state, n := range s.SagasByState() {
			ch <- prometheus.MustNewConstMetric(c.d.sagas, prometheus.GaugeValue, float64(n), state)
		}
	}
	if s := c.opts.Idem; s != nil {
		ch <- prometheus.MustNewConstMetric(c.d.idemReplays, prometheus.CounterValue, float64(s.Replays()))
	}
}

// noTable is the "table" label of conflicts on records that belong to no
// table (stm.Stats.Conflicts[""]).
const noTable = "(none)"

func (c *Collector) collectDB(ch chan<- prometheus.Metric, db *stm.DB) {
	st := db.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.d.commits, st.Commits)
	counter(c.d.escalations, st.Escalations)
	counter(c.d.aborts, st.Rollbacks, "error")
	counter(c.d.aborts, st.Panics, "panic")
	counter(c.d.aborts, st.Canceled, "canceled")
	counter(c.d.aborts, st.RedoLimit, "redo_limit")
	// Every cause, seen or not, so that rate() has a series from the start.
	for cause := stm.Cause(0); cause.String() != "unknown"; cause++ {
		counter(c.d.reruns, st.RerunsByCause[cause], causeLabel(cause))
	}
	for table, n := range st.Conflicts {
		if table == "" {
			table = noTable
		}
		counter(c.d.conflicts, n, table)
	}
	h := whilecommit.StatsOf(db)
	counter(c.d.hooksRun, h.Ran)
	counter(c.d.hooksPanics, h.Panicked)
}

// causeLabel turns a cause's words into a label value: "stale read" →
// "stale_read".
func causeLabel(c stm.Cause) string { return strings.ReplaceAll(c.String(), " ", "_") }

func (c *Collector) collectQueue(ctx context.Context, ch chan<- prometheus.Metric, name string, q *effectqueue.Queue) {
	ch <- prometheus.MustNewConstMetric(c.d.queueDepth, prometheus.GaugeValue, float64(q.Depth()), name)
	ch <- prometheus.MustNewConstMetric(c.d.queueOldest, prometheus.GaugeValue, q.OldestAge().Seconds(), name)
	n, truncated, err := c.dead[name].count(ctx, c.opts.DeadLetterRefresh)
	if err != nil {
		// The scrape says which metric failed (promhttp's HandlerOpts.ErrorHandling
		// decides what the scraper sees); the other metrics stand.
		c.opts.Logger.Warn("metrics: counting dead letters failed", "queue", name, "err", err)
		ch <- prometheus.NewInvalidMetric(c.d.queueDead, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.d.queueDead, prometheus.GaugeValue, float64(n), name)
	ch <- prometheus.MustNewConstMetric(c.d.queueDeadTrunc, prometheus.GaugeValue, boolValue(truncated), name)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
