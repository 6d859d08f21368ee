package natssink_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/natstest"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/natssink"
	"github.com/zest-stm/zest/stm"
)

// BenchmarkPublish: raw jetstream Publish of 256-byte messages from 16
// goroutines over 1,000 subjects, and the mover (16 lanes) with natssink
// draining a queue of the same messages, against the same in-process
// server, in one run. The mover's row is its drain alone; cpu-us/msg counts
// the whole process (the embedded server included) over the drain, and for
// the mover also the commits that filled the queue ("cpu-us/msg-with-commit").
func BenchmarkPublish(b *testing.B) {
	payload := bytes.Repeat([]byte("z"), 256)
	b.Run("raw-js-publish-16", func(b *testing.B) {
		e := benchSetup(b)
		js := e.sink.JetStream()
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		cpu0, start := testutil.CPUTime(), time.Now()
		b.ResetTimer()
		for range 16 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(b.N) {
						return
					}
					if _, err := js.Publish(context.Background(), fmt.Sprintf("ZEST.k%04d", i%1000), payload); err != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		report(b, start, cpu0)
		if failed.Load() > 0 {
			b.Fatalf("%d publishes failed", failed.Load())
		}
	})
	// The same publishes with what natssink adds to each: a Nats-Msg-Id and
	// the per-subject chain (each goroutine owns its subjects; 1,008 of them).
	b.Run("raw-js-publish-chained-16", func(b *testing.B) {
		e := benchSetup(b)
		js := e.sink.JetStream()
		var failed atomic.Int64
		var wg sync.WaitGroup
		cpu0, start := testutil.CPUTime(), time.Now()
		b.ResetTimer()
		for g := range 16 {
			wg.Go(func() {
				last := map[string]uint64{}
				for i := g; i < b.N; i += 16 {
					subj := fmt.Sprintf("ZEST.k%04d", i%1008) // 1008 = 63×16: subject k belongs to goroutine k%16
					ack, err := js.Publish(context.Background(), subj, payload,
						jetstream.WithMsgID(fmt.Sprintf("op-%d", i)), jetstream.WithExpectLastSequencePerSubject(last[subj]))
					if err != nil {
						failed.Add(1)
						continue
					}
					last[subj] = ack.Sequence
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		report(b, start, cpu0)
		if failed.Load() > 0 {
			b.Fatalf("%d publishes failed", failed.Load())
		}
	})
	b.Run("mover-natssink-16", func(b *testing.B) {
		e := benchSetup(b)
		cpuC := testutil.CPUTime()
		for i := 0; i < b.N; i += 100 {
			err := e.db.Run(context.Background(), func(tx *stm.Tx) error {
				for j := i; j < min(i+100, b.N); j++ {
					if err := e.q.Enqueue(tx, natssink.Publish(fmt.Sprintf("ZEST.k%04d", j%1000), payload, nil)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		commitCPU := testutil.CPUTime() - cpuC
		m, err := mover.New(e.q, map[string]mover.Sink{"nats": e.sink}, &mover.Options{Concurrency: 16, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		cpu0, start := testutil.CPUTime(), time.Now()
		b.ResetTimer()
		errc := make(chan error, 1)
		go func() { errc <- m.Run(context.Background()) }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := m.WaitDrained(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		report(b, start, cpu0)
		b.ReportMetric(float64((testutil.CPUTime()-cpu0+commitCPU).Microseconds())/float64(b.N), "cpu-us/msg-with-commit")
		if err := m.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		if st := m.Stats(); st.Delivered != uint64(b.N) {
			b.Fatalf("delivered %d of %d", st.Delivered, b.N)
		}
	})
}

func report(b *testing.B, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64((testutil.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/msg")
}

// benchSetup is setup for benchmarks: a server, a stream, a sink, a queue.
func benchSetup(b *testing.B) *env {
	b.Helper()
	e := &env{}
	srv := natstest.Start(b, nil)
	e.srv = srv
	var err error
	if e.sink, err = natssink.New(&natssink.Options{URL: srv.URL, Stream: "ZEST", CreateStream: true}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.sink.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.sink.Check(ctx); err != nil {
		b.Fatal(err)
	}
	if e.db, err = stm.Open(nil); err != nil {
		b.Fatal(err)
	}
	if e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: b.TempDir(), Logger: quiet}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.q.Close() })
	return e
}
