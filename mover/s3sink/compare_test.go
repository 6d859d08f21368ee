package s3sink_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/miniotest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
)

// sample is one round of a side-by-side comparison.
type sample struct {
	rawCPU, moverCPU   time.Duration // per object; the mover's includes the commits
	rawRate, moverRate float64       // objects per second
}

// BenchmarkMoverVsRaw puts b.N objects of 1 KiB over 1,000 keys, five
// rounds, each round first with raw minio-go PutObject from 16 goroutines,
// then through Zest (commit 100 entries per transaction, then a mover of 16
// lanes drains the queue), against the same MinIO. Interleaving the rounds
// lets both sides see the same machine load. It reports the medians: CPU
// per object of this process (MinIO runs in its own; the mover's counts the
// commits, enqueues, deliveries and acks), objects per second (the mover's
// over its drain), and mover/raw ratios. Run with -benchtime 1000x -v to see
// each round.
func BenchmarkMoverVsRaw(b *testing.B) {
	srv := miniotest.Start(b)
	payload := bytes.Repeat([]byte("z"), 1024)
	var rounds []sample
	for round := range 5 {
		var s sample
		bucket := fmt.Sprintf("cmp-raw-%d-%d", round, time.Now().UnixNano())
		e := benchEnv(b, srv, bucket)
		c := e.sink.Client()
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		cpu0, start := cpuUsed(), time.Now()
		for range 16 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(b.N) {
						return
					}
					_, err := c.PutObject(context.Background(), bucket, fmt.Sprintf("k%04d", i%1000), bytes.NewReader(payload), 1024, minio.PutObjectOptions{})
					if err != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		s.rawRate = float64(b.N) / time.Since(start).Seconds()
		s.rawCPU = (cpuUsed() - cpu0) / time.Duration(b.N)
		if failed.Load() > 0 {
			b.Fatalf("%d raw puts failed", failed.Load())
		}

		bucket = fmt.Sprintf("cmp-mover-%d-%d", round, time.Now().UnixNano())
		e = benchEnv(b, srv, bucket)
		cpu0 = cpuUsed()
		e.commitN(b, b.N, func(i int) effectqueue.Entry {
			return s3sink.Put(bucket, fmt.Sprintf("k%04d", i%1000), payload, "", nil)
		})
		start = time.Now()
		st := e.moveAll(b, mover.Options{Concurrency: 16})
		s.moverRate = float64(b.N) / time.Since(start).Seconds()
		s.moverCPU = (cpuUsed() - cpu0) / time.Duration(b.N)
		if st.Delivered != uint64(b.N) {
			b.Fatalf("delivered %d of %d", st.Delivered, b.N)
		}
		b.Logf("round %d: raw %v CPU/obj %.0f obj/s | mover %v CPU/obj %.0f obj/s | CPU ×%.2f, throughput ×%.2f",
			round, s.rawCPU, s.rawRate, s.moverCPU, s.moverRate,
			float64(s.moverCPU)/float64(s.rawCPU), s.moverRate/s.rawRate)
		rounds = append(rounds, s)
	}
	reportComparison(b, rounds, "obj")
}

func reportComparison(b *testing.B, rounds []sample, unit string) {
	med := func(f func(s sample) float64) float64 {
		v := make([]float64, len(rounds))
		for i, s := range rounds {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(func(s sample) float64 { return float64(s.rawCPU.Microseconds()) }), "raw-cpu-us/"+unit)
	b.ReportMetric(med(func(s sample) float64 { return float64(s.moverCPU.Microseconds()) }), "mover-cpu-us/"+unit)
	b.ReportMetric(med(func(s sample) float64 { return s.rawRate }), "raw-"+unit+"/s")
	b.ReportMetric(med(func(s sample) float64 { return s.moverRate }), "mover-"+unit+"/s")
	b.ReportMetric(med(func(s sample) float64 { return float64(s.moverCPU) / float64(s.rawCPU) }), "cpu-ratio")
	b.ReportMetric(med(func(s sample) float64 { return s.moverRate / s.rawRate }), "throughput-ratio")
}
