package s3sink_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/miniotest"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
)

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
	var rounds []testutil.Round
	for round := range 5 {
		var s testutil.Round
		bucket := fmt.Sprintf("cmp-raw-%d-%d", round, time.Now().UnixNano())
		e := benchEnv(b, srv, bucket)
		c := e.sink.Client()
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
					_, err := c.PutObject(context.Background(), bucket, fmt.Sprintf("k%04d", i%1000), bytes.NewReader(payload), 1024, minio.PutObjectOptions{})
					if err != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		s.RawRate = float64(b.N) / time.Since(start).Seconds()
		s.RawCPU = (testutil.CPUTime() - cpu0) / time.Duration(b.N)
		if failed.Load() > 0 {
			b.Fatalf("%d raw puts failed", failed.Load())
		}

		bucket = fmt.Sprintf("cmp-mover-%d-%d", round, time.Now().UnixNano())
		e = benchEnv(b, srv, bucket)
		cpu0 = testutil.CPUTime()
		e.commitN(b, b.N, func(i int) effectqueue.Entry {
			return s3sink.Put(bucket, fmt.Sprintf("k%04d", i%1000), payload, "", nil)
		})
		start = time.Now()
		st := e.moveAll(b, mover.Options{Concurrency: 16})
		s.MoverRate = float64(b.N) / time.Since(start).Seconds()
		s.MoverCPU = (testutil.CPUTime() - cpu0) / time.Duration(b.N)
		if st.Delivered != uint64(b.N) {
			b.Fatalf("delivered %d of %d", st.Delivered, b.N)
		}
		b.Logf("round %d: raw %v CPU/obj %.0f obj/s | mover %v CPU/obj %.0f obj/s | CPU ×%.2f, throughput ×%.2f",
			round, s.RawCPU, s.RawRate, s.MoverCPU, s.MoverRate,
			float64(s.MoverCPU)/float64(s.RawCPU), s.MoverRate/s.RawRate)
		rounds = append(rounds, s)
	}
	testutil.ReportRounds(b, rounds, "obj")
}
