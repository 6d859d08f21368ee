package mover

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
)

// nullSink confirms every delivery at once.
type nullSink struct{}

func (nullSink) Apply(context.Context, Delivery) error { return nil }

// BenchmarkOverhead measures what Zest itself costs per delivered entry,
// with a sink that does nothing: commits of 100 entries of 1 KiB over 1,000
// keys, then a mover of 16 lanes draining the queue (read, dispatch, ack).
// cpu-us/entry is this process's CPU per entry over the drain;
// cpu-us/entry-with-commit adds the commits.
func BenchmarkOverhead(b *testing.B) {
	payload := bytes.Repeat([]byte("z"), 1024)
	db, err := stm.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	cpuC := testutil.CPUTime()
	for i := 0; i < b.N; i += 100 {
		err := db.Run(context.Background(), func(tx *stm.Tx) error {
			for j := i; j < min(i+100, b.N); j++ {
				e := effectqueue.Entry{Kind: "null.put", Key: fmt.Sprintf("bucket/k%04d", j%1000), Payload: payload}
				if err := q.Enqueue(tx, e); err != nil {
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
	m, err := New(q, map[string]Sink{"null": nullSink{}}, &Options{Concurrency: 16, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testutil.CPUTime()
	errc := make(chan error, 1)
	go func() { errc <- m.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := m.WaitDrained(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := testutil.CPUTime() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/entry")
	b.ReportMetric(float64((cpu+commitCPU).Microseconds())/float64(b.N), "cpu-us/entry-with-commit")
	if err := m.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if st := m.Stats(); st.Delivered != uint64(b.N) {
		b.Fatalf("delivered %d of %d", st.Delivered, b.N)
	}
}
