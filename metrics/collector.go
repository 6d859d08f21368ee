package metrics

import (
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// Collector exports Zest's state to Prometheus. It reads its sources when
// scraped, so nothing in the commit path changes for it, and keeps nothing
// between scrapes but the label pairs of the series it sent.
//
// A Collector is safe for concurrent use: a registry may scrape it from
// several goroutines at once.
type Collector struct {
	opts   Options
	queues []string // sorted names, so a scrape's order is stable
	movers []string
	d      descs
	labels labelCache // the label pairs of the series sent so far
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
		d:      newDescs(),
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
	out := &sender{ch: ch, labels: &c.labels}
	if db := c.opts.DB; db != nil {
		c.collectDB(out, db)
	}
	for _, name := range c.queues {
		c.collectQueue(out, name, c.opts.Queues[name])
	}
	for _, name := range c.movers {
		c.guard(out, c.d.moverInFlight, "Movers["+name+"].Stats", func() { c.collectMover(out, name, c.opts.Movers[name]) })
	}
	if s := c.opts.Sagas; s != nil {
		c.guard(out, c.d.sagas, "Sagas.SagasByState", func() {
			for state, n := range s.SagasByState() {
				out.gauge(c.d.sagas, float64(n), state)
			}
		})
	}
	if s := c.opts.Idem; s != nil {
		c.guard(out, c.d.idemReplays, "Idem.Replays", func() { out.counter(c.d.idemReplays, s.Replays()) })
	}
}

// guard runs fn, which calls a source the application supplied, and turns
// a panic in it into a failed metric and a log line: a scrape must not
// bring the process down.
func (c *Collector) guard(out *sender, d *prometheus.Desc, source string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("%w: %s: %v", ErrSourcePanicked, source, r)
			c.opts.Logger.Error("metrics: a source panicked during a scrape", "source", source, "panic", r, "stack", string(debug.Stack()))
			out.ch <- prometheus.NewInvalidMetric(d, err)
		}
	}()
	fn()
}

// noTable is the "table" label of conflicts on records that belong to no
// table (stm.Stats.Conflicts[""]).
const noTable = "(none)"

func (c *Collector) collectDB(out *sender, db *stm.DB) {
	st := db.Stats()
	out.counter(c.d.commits, st.Commits)
	out.counter(c.d.escalations, st.Escalations)
	out.counter(c.d.aborts, st.Rollbacks, "error")
	out.counter(c.d.aborts, st.Panics, "panic")
	out.counter(c.d.aborts, st.Canceled, "canceled")
	out.counter(c.d.aborts, st.RedoLimit, "redo_limit")
	// Every cause, seen or not, so that rate() has a series from the start.
	for cause := stm.Cause(0); cause.String() != "unknown"; cause++ {
		out.counter(c.d.reruns, st.RerunsByCause[cause], causeLabel(cause))
	}
	for table, n := range st.Conflicts {
		if table == "" {
			table = noTable
		}
		out.counter(c.d.conflicts, n, table)
	}
	h := whilecommit.StatsOf(db)
	out.counter(c.d.hooksRun, h.Ran)
	out.counter(c.d.hooksPanics, h.Panicked)
}

// causeLabel turns a cause's words into a label value: "stale read" →
// "stale_read".
func causeLabel(c stm.Cause) string { return strings.ReplaceAll(c.String(), " ", "_") }

func (c *Collector) collectQueue(out *sender, name string, q *effectqueue.Queue) {
	st := q.Stats()
	out.gauge(c.d.queueDepth, float64(st.Depth), name)
	out.gauge(c.d.queueOldest, st.OldestAge.Seconds(), name)
	out.gauge(c.d.queueDead, float64(st.DeadLetters), name)
	out.counter(c.d.queueCommits, st.Commits, name)
	out.counter(c.d.queueEntries, st.Entries, name)
	out.counter(c.d.queueWrites, st.Writes, name)
	out.counter(c.d.queueWriteErrors, st.WriteErrors, name)
	out.counter(c.d.queueAsyncLost, st.AsyncLost, name)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
