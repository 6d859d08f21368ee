// Command sagabench measures sagas per second and completion latency of a
// 3-step flow — a local step, a remote call, a local step — at 1, 8 and 64
// concurrent sagas, for
//
//   - zest: package saga (local steps are transactions on a durable table;
//     the remote step is dispatched through the effect queue and the mover;
//     Badger with SyncWrites);
//   - go-workflows: github.com/cschleiden/go-workflows on its SQLite
//     backend (a file in WAL mode), the same flow as a workflow of three
//     activities.
//
// The remote step is a real HTTP request to a server on 127.0.0.1 that
// dedupes by idempotency key; both engines call the same server. A local
// step increments a counter: in a durable table for Zest (in the step's
// transaction), in a mutex-guarded map for go-workflows (its activity result
// is what it persists).
//
// Completion: for Zest, when the transaction that ends the saga is durable
// (an OnEnd hook registers a whilecommit hook); for go-workflows, when the
// last activity returns — before its result and the workflow's completion
// are written, which favours go-workflows. Each cell runs c workers that
// start a saga and wait for it, in a loop, for -d; the engines alternate
// within one run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// engine runs sagas of the 3-step flow.
type engine interface {
	name() string
	setup(dir, url string, concurrency int) error
	// run starts saga id and returns when it completed.
	run(ctx context.Context, id string) error
	close()
}

type cell struct {
	engine      string
	concurrency int
	sagas       int
	perSec      float64
	p50, p99    time.Duration
	failed      int
}

func main() {
	var (
		dur     = flag.Duration("d", 3*time.Second, "duration of one cell")
		levels  = flag.String("c", "1,8,64", "concurrent sagas")
		engines = flag.String("engines", "zest,go-workflows", "engines to run")
		out     = flag.String("o", "", "also write the markdown table to this file")
	)
	flag.DurationVar(&gwPoll, "gw-poll", gwPoll, "go-workflows' workflow and activity polling interval")
	flag.Parse()
	var cs []int
	for _, f := range splitComma(*levels) {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "bad -c:", f)
			os.Exit(2)
		}
		cs = append(cs, n)
	}
	url, stop := startRemote()
	defer stop()
	var rows []cell
	for _, c := range cs {
		for _, name := range splitComma(*engines) {
			e := newEngine(name)
			if e == nil {
				fmt.Fprintln(os.Stderr, "unknown engine", name)
				os.Exit(2)
			}
			row, err := measure(e, url, c, *dur)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s c=%d: %v\n", name, c, err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "%-13s c=%-3d %8.0f sagas/s  p50 %v  p99 %v  (%d sagas, %d failed)\n",
				row.engine, c, row.perSec, row.p50, row.p99, row.sagas, row.failed)
			rows = append(rows, row)
		}
	}
	table := render(rows)
	fmt.Print(table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func newEngine(name string) engine {
	switch name {
	case "zest":
		return &zestEngine{}
	case "go-workflows":
		return &gwEngine{}
	}
	return nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// measure runs c workers for d on a fresh engine.
func measure(e engine, url string, c int, d time.Duration) (cell, error) {
	dir, err := os.MkdirTemp("", "sagabench-")
	if err != nil {
		return cell{}, err
	}
	defer os.RemoveAll(dir)
	if err := e.setup(dir, url, c); err != nil {
		return cell{}, err
	}
	defer e.close()
	// Warm up: one saga per worker.
	ctx := context.Background()
	var warm sync.WaitGroup
	for w := range c {
		warm.Go(func() { _ = e.run(ctx, fmt.Sprintf("warm-%d", w)) })
	}
	warm.Wait()

	var (
		mu     sync.Mutex
		lat    []time.Duration
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range c {
		wg.Go(func() {
			var mine []time.Duration
			for n := 0; time.Now().Before(deadline); n++ {
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := e.run(rctx, fmt.Sprintf("s-%d-%d", w, n))
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	row := cell{engine: e.name(), concurrency: c, sagas: len(lat), failed: int(failed.Load())}
	if len(lat) > 0 {
		row.perSec = float64(len(lat)) / elapsed.Seconds()
		row.p50 = lat[len(lat)/2]
		row.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return row, nil
}

func render(rows []cell) string {
	s := "| concurrent sagas | engine | sagas/s | p50 completion | p99 completion | sagas | failed | vs go-workflows |\n"
	s += "|---:|---|---:|---:|---:|---:|---:|---:|\n"
	base := map[int]float64{}
	for _, r := range rows {
		if r.engine == "go-workflows" {
			base[r.concurrency] = r.perSec
		}
	}
	for _, r := range rows {
		ratio := "—"
		if b := base[r.concurrency]; b > 0 {
			ratio = fmt.Sprintf("%.1f×", r.perSec/b)
		}
		s += fmt.Sprintf("| %d | %s | %.0f | %s | %s | %d | %d | %s |\n", r.concurrency, r.engine, r.perSec,
			ms(r.p50), ms(r.p99), r.sagas, r.failed, ratio)
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// startRemote serves the remote step: POST /charge applies each
// idempotency key once.
func startRemote() (url string, stop func()) {
	var mu sync.Mutex
	seen := map[string]bool{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /charge", func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		seen[key] = true
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }
}

// charge is the remote call both engines make.
func charge(ctx context.Context, hc *http.Client, url, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/charge", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("charge: %s", resp.Status)
	}
	return nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
