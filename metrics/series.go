package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zest-stm/zest/mover"
)

// A scrape sends a few dozen metrics whose label values rarely change
// (queue, sink, table names, causes). prometheus.NewConstMetric builds,
// checks and sorts a metric's label pairs on every call; the collector
// builds them once per series instead, with the same function, keeps them
// in a labelCache, and sends metrics that share them. The client library's
// own constant metrics share their label pairs between scrapes the same
// way: a Metric's Write hands out pairs that the registry must not change.
// The samples of a scrape are allocated a slab at a time, not one by one.

// maxCachedSeries bounds a labelCache. Label values come from small fixed
// sets, but table names and saga states come from the application: past
// this many series, new ones are built per scrape, as the library does.
const maxCachedSeries = 4096

// seriesKey names one series: its description and up to three label
// values (no metric of the package has more).
type seriesKey struct {
	d       *prometheus.Desc
	n       int // how many label values
	a, b, c string
}

// labelCache holds the label pairs of each series the collector has sent.
// It is safe for concurrent use.
type labelCache struct {
	mu sync.Mutex
	m  map[seriesKey][]*dto.LabelPair // guarded by mu
}

// pairs returns the label pairs of series (d, values), or the error that
// prometheus.NewConstMetric gives for them (a wrong number of values, a
// value that is not UTF-8, an invalid description).
func (lc *labelCache) pairs(d *prometheus.Desc, values ...string) ([]*dto.LabelPair, error) {
	k := seriesKey{d: d, n: len(values)}
	switch len(values) {
	case 3:
		k.c = values[2]
		fallthrough
	case 2:
		k.b = values[1]
		fallthrough
	case 1:
		k.a = values[0]
	case 0:
	default:
		return build(k, values) // not cached: no series of the package has more
	}
	lc.mu.Lock()
	p, ok := lc.m[k]
	lc.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := build(k, []string{k.a, k.b, k.c}[:k.n])
	if err != nil {
		return nil, err
	}
	lc.mu.Lock()
	if lc.m == nil {
		lc.m = make(map[seriesKey][]*dto.LabelPair)
	}
	if len(lc.m) < maxCachedSeries {
		lc.m[k] = p
	}
	lc.mu.Unlock()
	return p, nil
}

// build makes the label pairs of a series with the client library, which
// checks them.
func build(k seriesKey, values []string) ([]*dto.LabelPair, error) {
	m, err := prometheus.NewConstMetric(k.d, prometheus.UntypedValue, 0, values...)
	if err != nil {
		return nil, err
	}
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return nil, err
	}
	return out.Label, nil
}

// counterSample and gaugeSample are values of one scrape. Write allocates
// nothing: the value and its protobuf wrapper live in the sample.
type counterSample struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	v      float64
	pb     dto.Counter
}

func (s *counterSample) Desc() *prometheus.Desc { return s.desc }

func (s *counterSample) Write(out *dto.Metric) error {
	s.pb.Value = &s.v
	out.Label, out.Counter = s.labels, &s.pb
	return nil
}

type gaugeSample struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	v      float64
	pb     dto.Gauge
}

func (s *gaugeSample) Desc() *prometheus.Desc { return s.desc }

func (s *gaugeSample) Write(out *dto.Metric) error {
	s.pb.Value = &s.v
	out.Label, out.Gauge = s.labels, &s.pb
	return nil
}

// histogramSample is a mover's latency histogram in one scrape.
type histogramSample struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	h      mover.Histogram
}

func (s *histogramSample) Desc() *prometheus.Desc { return s.desc }

// Write turns the mover's per-bucket counts into Prometheus's cumulative
// buckets (the +Inf bucket is the count, implicit).
func (s *histogramSample) Write(out *dto.Metric) error {
	buckets := make([]dto.Bucket, len(s.h.Bounds))
	ptrs := make([]*dto.Bucket, len(s.h.Bounds))
	nums := make([]uint64, len(s.h.Bounds))
	var sum uint64
	for i := range s.h.Bounds {
		sum += s.h.Counts[i]
		nums[i] = sum
		buckets[i].CumulativeCount = &nums[i]
		buckets[i].UpperBound = &s.h.Bounds[i]
		ptrs[i] = &buckets[i]
	}
	out.Label = s.labels
	out.Histogram = &dto.Histogram{SampleCount: &s.h.Count, SampleSum: &s.h.Sum, Bucket: ptrs}
	return nil
}

// slabSize is how many samples of a kind one allocation holds: a scrape of
// a DB, a queue and a mover of one sink sends about 25 counters and 10
// gauges.
const slabSize = 16

// sender builds the metrics of one scrape and sends them. A value the
// client library refuses (a label that is not valid UTF-8, from a table,
// sink or state name) becomes a failed metric in the scrape instead of a
// panic. A sender belongs to one Collect call: the registry may still be
// reading its metrics after Collect returns, so nothing of it is reused.
type sender struct {
	ch       chan<- prometheus.Metric
	labels   *labelCache
	counters []counterSample // allocated slabSize at a time
	gauges   []gaugeSample
}

func (s *sender) counter(d *prometheus.Desc, v uint64, labels ...string) {
	p, err := s.labels.pairs(d, labels...)
	if err != nil {
		s.ch <- prometheus.NewInvalidMetric(d, err)
		return
	}
	if len(s.counters) == cap(s.counters) {
		s.counters = make([]counterSample, 0, slabSize)
	}
	s.counters = append(s.counters, counterSample{desc: d, labels: p, v: float64(v)})
	s.ch <- &s.counters[len(s.counters)-1]
}

func (s *sender) gauge(d *prometheus.Desc, v float64, labels ...string) {
	p, err := s.labels.pairs(d, labels...)
	if err != nil {
		s.ch <- prometheus.NewInvalidMetric(d, err)
		return
	}
	if len(s.gauges) == cap(s.gauges) {
		s.gauges = make([]gaugeSample, 0, slabSize)
	}
	s.gauges = append(s.gauges, gaugeSample{desc: d, labels: p, v: v})
	s.ch <- &s.gauges[len(s.gauges)-1]
}

// histogram sends h, or nothing for a histogram whose shape it does not
// understand, rather than a wrong one.
func (s *sender) histogram(d *prometheus.Desc, h mover.Histogram, labels ...string) {
	if len(h.Counts) != len(h.Bounds)+1 {
		return
	}
	p, err := s.labels.pairs(d, labels...)
	if err != nil {
		s.ch <- prometheus.NewInvalidMetric(d, err)
		return
	}
	s.ch <- &histogramSample{desc: d, labels: p, h: h}
}
