package natssink_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/natssink"
	"github.com/zest-stm/zest/stm"
)

// BenchmarkNatsSinkVsRaw publishes b.N messages of 256 bytes over 1,000
// subjects, five rounds, each round first with raw jetstream Publish from
// 16 goroutines, then through Zest (commit 100 entries per transaction,
// then a mover of 16 lanes with natssink drains the queue), each against a
// fresh in-process server. Interleaving the rounds lets both sides see the
// same machine load. It reports the medians: CPU per message of the whole
// process (the embedded server included; the mover's counts the commits
// too), messages per second (the mover's over its drain), and mover/raw
// ratios. Run with -benchtime 20000x -v to see each round.
func BenchmarkNatsSinkVsRaw(b *testing.B) {
	payload := bytes.Repeat([]byte("z"), 256)
	var rounds []testutil.Round
	for round := range 5 {
		var s testutil.Round
		e := benchSetup(b)
		js := e.sink.JetStream()
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		cpu0, start := testutil.CPUTime(), time.Now()
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
		s.RawRate = float64(b.N) / time.Since(start).Seconds()
		s.RawCPU = (testutil.CPUTime() - cpu0) / time.Duration(b.N)
		if failed.Load() > 0 {
			b.Fatalf("%d raw publishes failed", failed.Load())
		}
		e.srv.Stop()

		e = benchSetup(b)
		cpu0 = testutil.CPUTime()
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
		m, err := mover.New(e.q, map[string]mover.Sink{"nats": e.sink}, &mover.Options{Concurrency: 16, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		errc := make(chan error, 1)
		go func() { errc <- m.Run(context.Background()) }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if err := m.WaitDrained(ctx); err != nil {
			b.Fatal(err)
		}
		s.MoverRate = float64(b.N) / time.Since(start).Seconds()
		s.MoverCPU = (testutil.CPUTime() - cpu0) / time.Duration(b.N)
		if err := m.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		if st := m.Stats(); st.Delivered != uint64(b.N) {
			b.Fatalf("delivered %d of %d", st.Delivered, b.N)
		}
		e.srv.Stop()
		b.Logf("round %d: raw %v CPU/msg %.0f msg/s | mover %v CPU/msg %.0f msg/s | CPU ×%.2f, throughput ×%.2f",
			round, s.RawCPU, s.RawRate, s.MoverCPU, s.MoverRate, float64(s.MoverCPU)/float64(s.RawCPU), s.MoverRate/s.RawRate)
		rounds = append(rounds, s)
	}
	testutil.ReportRounds(b, rounds, "msg")
}
