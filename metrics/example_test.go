package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/stm"
)

// ExampleNewCollector registers a collector of a DB and its queue with the
// application's own registry and serves it on /metrics.
func ExampleNewCollector() {
	dir, _ := os.MkdirTemp("", "zest-metrics-example-")
	defer os.RemoveAll(dir)
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	c, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Queues: map[string]*effectqueue.Queue{"main": q},
	})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry() // not the global one: nothing is registered for you
	reg.MustRegister(c)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux) // in an application: http.ListenAndServe(addr, mux)
	defer srv.Close()

	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		return q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: "receipts/1", Payload: []byte("sword")})
	})

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "zest_stm_commits_total") || strings.HasPrefix(line, "zest_queue_depth") {
			fmt.Println(line)
		}
	}
	// Output:
	// zest_queue_depth{queue="main"} 1
	// zest_stm_commits_total 1
}
