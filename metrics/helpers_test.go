package metrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// conflict commits a write to t[k] from another goroutine while the
// calling body's attempt is running, so an attempt that read t[k] is
// stale for sure and reruns. It waits for that commit.
func conflict(db *stm.DB, t *table.Table[string, int], k string) error {
	done := make(chan error, 1)
	go func() {
		done <- db.Run(context.Background(), func(tx *stm.Tx) error {
			v, _ := t.Get(tx, k)
			t.Put(tx, k, v+1)
			return nil
		})
	}()
	return <-done
}

// openQueue opens a DB and its queue in a temporary directory.
func openQueue(t testing.TB, opts *stm.Options) (*stm.DB, *effectqueue.Queue) {
	t.Helper()
	db, err := stm.Open(opts)
	require.NoError(t, err)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	return db, q
}

// enqueue commits one transaction that enqueues an entry per key.
func enqueue(t testing.TB, db *stm.DB, q *effectqueue.Queue, kind string, keys ...string) {
	t.Helper()
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		for _, k := range keys {
			if err := q.Enqueue(tx, effectqueue.Entry{Kind: kind, Key: k, Payload: []byte("payload of " + k)}); err != nil {
				return err
			}
		}
		return nil
	}))
}

// deadLetterAll dead-letters every pending entry of q.
func deadLetterAll(t testing.TB, q *effectqueue.Queue) {
	t.Helper()
	ctx := context.Background()
	for {
		items, err := q.Read(ctx, 0, 1000)
		require.NoError(t, err)
		if len(items) == 0 {
			return
		}
		for _, it := range items {
			require.NoError(t, q.DeadLetter(ctx, it.Seq, "test: set aside"))
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// gatherValues collects c through a pedantic registry and returns the
// values of metric name by their labels, written `k="v",k2="v2"`.
func gatherValues(t testing.TB, c prometheus.Collector, name string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	return valuesOf(mfs, name)
}

func valuesOf(mfs []*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Histogram != nil:
				v = float64(m.GetHistogram().GetSampleCount())
			}
			out[strings.Join(labels, ",")] = v
		}
	}
	return out
}

// histogramOf returns the histogram of metric name for sink.
func histogramOf(t testing.TB, c prometheus.Collector, name, sink string) *dto.Histogram {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" && l.GetValue() == sink {
					return m.GetHistogram()
				}
			}
		}
	}
	t.Fatalf("no %s for sink %q", name, sink)
	return nil
}
