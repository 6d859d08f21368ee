package s3sink_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
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
	"github.com/zest-stm/zest/stm"
)

// benchEnv is setup for benchmarks (testing.B).
func benchEnv(b *testing.B, srv *miniotest.Server, bucket string) *env {
	b.Helper()
	e := &env{srv: srv, dir: b.TempDir()}
	var err error
	e.sink, err = s3sink.New(&s3sink.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, CreateBuckets: true})
	if err != nil {
		b.Fatal(err)
	}
	if e.db, err = stm.Open(nil); err != nil {
		b.Fatal(err)
	}
	if e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: e.dir}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.q.Close() })
	if err := e.sink.Check(context.Background(), bucket); err != nil {
		b.Fatal(err)
	}
	return e
}

func (e *env) commitN(b *testing.B, n int, entry func(i int) effectqueue.Entry) {
	b.Helper()
	for i := 0; i < n; i += 100 {
		err := e.db.Run(context.Background(), func(tx *stm.Tx) error {
			for j := i; j < min(i+100, n); j++ {
				if err := e.q.Enqueue(tx, entry(j)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// moveAll runs a mover until the queue is drained and returns its stats.
func (e *env) moveAll(b *testing.B, o mover.Options) mover.Stats {
	b.Helper()
	o.Logger = quiet
	m, err := mover.New(e.q, map[string]mover.Sink{"s3": e.sink}, &o)
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- m.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := m.WaitDrained(ctx); err != nil {
		b.Fatal(err)
	}
	if err := m.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return m.Stats()
}

// BenchmarkPut1KiB: raw minio-go PutObject of 1 KiB objects from 16
// goroutines, and the mover (16 lanes) draining a queue of the same puts
// spread over 1,000 keys, against the same MinIO in the same run. cpu-us/obj
// is this process's CPU (MinIO runs in its own) per object over the timed
// part; for the mover, cpu-us/obj-with-commit adds the commits that filled
// the queue (commit + enqueue + mover + ack, the measure).
func BenchmarkPut1KiB(b *testing.B) {
	srv := miniotest.Start(b)
	payload := bytes.Repeat([]byte("z"), 1024)
	b.Run("raw-minio-go-16", func(b *testing.B) {
		e := benchEnv(b, srv, "raw")
		c := e.sink.Client()
		var next atomic.Int64
		var failed atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start, cpu0 := time.Now(), testutil.CPUTime()
		for range 16 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(b.N) {
						return
					}
					_, err := c.PutObject(context.Background(), "raw", fmt.Sprintf("k%04d", i%1000), bytes.NewReader(payload), 1024, minio.PutObjectOptions{})
					if err != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "objects/s")
		b.ReportMetric(float64((testutil.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/obj")
		if failed.Load() > 0 {
			b.Fatalf("%d puts failed", failed.Load())
		}
	})
	b.Run("mover-16", func(b *testing.B) {
		e := benchEnv(b, srv, "moved")
		cpuC := testutil.CPUTime()
		e.commitN(b, b.N, func(i int) effectqueue.Entry {
			return s3sink.Put("moved", fmt.Sprintf("k%04d", i%1000), payload, "", nil)
		})
		commitCPU := testutil.CPUTime() - cpuC
		b.ResetTimer()
		start, cpu0 := time.Now(), testutil.CPUTime()
		st := e.moveAll(b, mover.Options{Concurrency: 16, AckInterval: benchAckInterval})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "objects/s")
		moveCPU := testutil.CPUTime() - cpu0
		b.ReportMetric(float64(moveCPU.Microseconds())/float64(b.N), "cpu-us/obj")
		b.ReportMetric(float64((moveCPU+commitCPU).Microseconds())/float64(b.N), "cpu-us/obj-with-commit")
		b.ReportMetric(float64(st.LatencyP50.Microseconds())/1000, "p50-commit-to-confirmed-ms")
		if st.Delivered != uint64(b.N) {
			b.Fatalf("delivered %d of %d", st.Delivered, b.N)
		}
	})
}

// signalling wraps a sink and reports each confirmed apply on a channel.
type signalling struct {
	mover.Sink
	confirmed chan uint64
}

func (s *signalling) Apply(ctx context.Context, d mover.Delivery) error {
	err := s.Sink.Apply(ctx, d)
	if err == nil {
		s.confirmed <- d.Seq
	}
	return err
}

// BenchmarkCommitToVisible measures the time from a commit's return to
// MinIO's confirmation of its object (after which it is readable), one
// commit at a time.
func BenchmarkCommitToVisible(b *testing.B) {
	srv := miniotest.Start(b)
	e := benchEnv(b, srv, "latency")
	sig := &signalling{Sink: e.sink, confirmed: make(chan uint64, 1)}
	m, err := mover.New(e.q, map[string]mover.Sink{"s3": sig}, &mover.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = m.Run(context.Background()) }()
	defer func() { _ = m.Shutdown(context.Background()) }()
	payload := bytes.Repeat([]byte("z"), 1024)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := e.db.Run(context.Background(), func(tx *stm.Tx) error {
			return e.q.Enqueue(tx, s3sink.Put("latency", fmt.Sprintf("o%d", i), payload, "", nil))
		})
		if err != nil {
			b.Fatal(err)
		}
		done := time.Now()
		<-sig.confirmed
		lat = append(lat, time.Since(done))
	}
	b.StopTimer()
	p50, p99 := percentiles(lat)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

func percentiles(d []time.Duration) (time.Duration, time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100]
}

// BenchmarkCoalesce: 10 keys × 1,000 full-object updates, moved with and
// without Options.Coalesce. b.N is ignored beyond 1: one drain per run.
func BenchmarkCoalesce(b *testing.B) {
	srv := miniotest.Start(b)
	payload := bytes.Repeat([]byte("z"), 1024)
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("coalesce=%v", on), func(b *testing.B) {
			for range b.N {
				bucket := fmt.Sprintf("coalesce-%v-%d", on, time.Now().UnixNano())
				e := benchEnv(b, srv, bucket)
				e.commitN(b, 10_000, func(i int) effectqueue.Entry {
					return s3sink.Put(bucket, fmt.Sprintf("key%d", i%10), payload, "", nil)
				})
				start := time.Now()
				st := e.moveAll(b, mover.Options{Concurrency: 16, Coalesce: on})
				b.ReportMetric(time.Since(start).Seconds(), "drain-s")
				b.ReportMetric(float64(st.Delivered), "objects-written")
				b.ReportMetric(float64(st.Superseded), "superseded")
			}
		})
	}
}

// benchAckInterval is the mover's AckInterval in BenchmarkPut1KiB
// ($ZEST_BENCH_ACK_INTERVAL, default the mover's default).
var benchAckInterval = func() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("ZEST_BENCH_ACK_INTERVAL"))
	return d
}()
