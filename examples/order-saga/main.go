// Command order-saga is the saga example: a product update that sets the
// price in an outside price service, takes units from an outside stock
// service, and then updates the local product record, in that order. If the
// stock service refuses (out of stock), the price is put back with the
// price service's reverse operation, using the old price the saga recorded;
// if putting it back fails too, the saga is stuck until a person (here: the
// code) resolves it.
//
// Both services are real HTTP servers on 127.0.0.1 that the example starts,
// with failure injection: every -price-fail-every-th price request fails
// with 503 (retried; a call fails at most once), every -out-of-stock-every-th product has no stock
// (compensated), and -stuck of those have a price service that cannot put
// the old price back (stuck, then repaired and retried from code). At the
// end the program checks both services and the local table against each
// saga's outcome, and exits 1 if anything disagrees.
//
//	go run ./examples/order-saga            # make demo-saga
//	go run ./examples/order-saga -n 100 -price-fail-every 3
//
// While it runs, the admin page (stuck sagas included) and the Prometheus
// metrics are served on a free port of 127.0.0.1 (-admin), and their URLs
// printed; -hold keeps them up after the run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Update is the saga's state: what to change, and the operation log the
// undo needs (the price before the change, answered by the price service).
type Update struct {
	SKU      string
	NewPrice int
	Take     int
	OldPrice int
}

// Product is the local record the last step updates.
type Product struct {
	Price int
	Taken int
}

// Config is what one run does.
type Config struct {
	N               int
	PriceFailEvery  int
	OutOfStockEvery int
	Stuck           int
	Dir             string
	Out             io.Writer
	InitialPrice    int
	InitialStock    int
	ResolveWho      string
	// AdminAddr, when set, is where the admin page and /metrics are served
	// during the run; Hold keeps them up after it.
	AdminAddr string
	Hold      time.Duration
}

func main() {
	cfg := Config{Out: os.Stdout, InitialPrice: 100, InitialStock: 5, ResolveWho: "order-saga demo"}
	flag.IntVar(&cfg.N, "n", 12, "product updates (sagas) to run")
	flag.IntVar(&cfg.PriceFailEvery, "price-fail-every", 4, "every n-th price request fails with 503, each call at most once (0: never)")
	flag.IntVar(&cfg.OutOfStockEvery, "out-of-stock-every", 4, "every n-th product has no stock: its saga compensates (0: never)")
	flag.IntVar(&cfg.Stuck, "stuck", 1, "how many compensating sagas meet a price service that cannot restore (stuck, then resolved)")
	flag.StringVar(&cfg.Dir, "dir", "", "data directory (default: a temporary one)")
	flag.StringVar(&cfg.AdminAddr, "admin", "127.0.0.1:0", "address of the admin page and /metrics during the run (\"\" for none)")
	flag.DurationVar(&cfg.Hold, "hold", 0, "keep serving the admin page this long after the run")
	flag.Parse()
	if err := run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "order-saga:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg Config) error {
	// The saga's OnStuck hook writes from the mover's goroutines while run
	// writes its report: one lock keeps the lines whole.
	cfg.Out = &syncWriter{w: cfg.Out}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "order-saga-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	prices, stock := newPriceService(cfg.PriceFailEvery), newStockService()
	priceURL, stopPrice, err := serve(prices.handler())
	if err != nil {
		return err
	}
	defer stopPrice()
	stockURL, stopStock, err := serve(stock.handler())
	if err != nil {
		return err
	}
	defer stopStock()
	fmt.Fprintf(cfg.Out, "price service on %s, stock service on %s\n", priceURL, stockURL)

	// The engine: a DB, its queue (the durable log), a durable product
	// table, the saga runner, and a mover that carries the saga calls.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := stm.Open(&stm.Options{Logger: quiet})
	if err != nil {
		return err
	}
	defer db.Close()
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: cfg.Dir, Logger: quiet})
	if err != nil {
		return err
	}
	defer q.Close()
	products, err := table.NewDurable[string, Product](db, "products", nil)
	if err != nil {
		return err
	}
	r, err := saga.New(db, q, &saga.Options{
		Retry:   saga.Retry{MaxAttempts: 4, Base: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		Timeout: 2 * time.Second,
		Logger:  quiet,
		OnStuck: func(in saga.Info) {
			fmt.Fprintf(cfg.Out, "  STUCK %s at %s (%s): %s\n", in.ID, in.Step, in.StuckIn, in.Reason)
		},
	})
	if err != nil {
		return err
	}
	flow, err := defineFlow(priceURL, stockURL, products)
	if err != nil {
		return err
	}
	if err := flow.Register(r, nil); err != nil {
		return err
	}
	m, err := mover.New(q, map[string]mover.Sink{saga.Kind: r.Sink()}, &mover.Options{Concurrency: 32, Logger: quiet})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	go func() { _ = r.Run(ctx) }()
	defer m.Shutdown(context.Background())
	if cfg.AdminAddr != "" {
		stopAdmin, err := serveAdmin(cfg, db, q, m, r)
		if err != nil {
			return err
		}
		defer stopAdmin()
		if cfg.Hold > 0 {
			defer func() {
				fmt.Fprintf(cfg.Out, "the admin page stays up for %v\n", cfg.Hold)
				t := time.NewTimer(cfg.Hold)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
				}
			}()
		}
	}

	// The products and their stock; some have none, and the price service
	// cannot restore the price of the first -stuck of those.
	ids := make([]string, cfg.N)
	stuckLeft := cfg.Stuck
	for i := range cfg.N {
		sku := fmt.Sprintf("sku-%03d", i)
		ids[i] = "update-" + sku
		prices.mu.Lock()
		prices.prices[sku] = cfg.InitialPrice
		prices.mu.Unlock()
		stock.mu.Lock()
		stock.onHand[sku] = stockBefore(cfg, i)
		stock.mu.Unlock()
		if stockBefore(cfg, i) == 0 {
			if stuckLeft > 0 {
				prices.brokenUndo.Store(sku, true)
				stuckLeft--
			}
		}
	}

	start := time.Now()
	for i, id := range ids {
		u := Update{SKU: fmt.Sprintf("sku-%03d", i), NewPrice: cfg.InitialPrice + 10 + i, Take: 2}
		err := db.Run(ctx, func(tx *stm.Tx) error { return flow.Start(tx, id, u) })
		if err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
	}
	// Starting again is refused: the same update is never processed twice.
	err = db.Run(ctx, func(tx *stm.Tx) error { return flow.Start(tx, ids[0], Update{SKU: "sku-000", NewPrice: 1, Take: 1}) })
	fmt.Fprintf(cfg.Out, "started %d sagas; starting %s again: %v\n", cfg.N, ids[0], err)

	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	for _, id := range ids {
		if _, err := r.Wait(wctx, id); err != nil {
			return fmt.Errorf("wait %s: %w", id, err)
		}
	}
	c := r.Counters()
	fmt.Fprintf(cfg.Out, "settled in %v: %d done, %d compensated, %d stuck (%d price requests, %d stock requests)\n",
		time.Since(start).Round(time.Millisecond), c.Done, c.Compensated, c.Stuck, prices.requests.Load(), stock.requests.Load())

	// An operator (here, code) repairs the price service and retries.
	stuck, err := r.ListStuck(ctx, "", 100)
	if err != nil {
		return err
	}
	for _, in := range stuck {
		var st Update
		if b, err := json.Marshal(in.State); err == nil {
			_ = json.Unmarshal(b, &st)
		}
		prices.brokenUndo.Delete(st.SKU)
		res := saga.Resolution{Action: saga.ActionRetry, Who: cfg.ResolveWho, Note: "price history restored"}
		if err := r.Resolve(ctx, in.ID, res); err != nil {
			return fmt.Errorf("resolve %s: %w", in.ID, err)
		}
		after, err := r.Wait(wctx, in.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.Out, "resolved %s (retry by %q): now %s; history:\n", in.ID, cfg.ResolveWho, after.Phase)
		for _, ev := range after.History {
			fmt.Fprintf(cfg.Out, "    %-22s %-8s %s%s%s\n", ev.Kind, ev.Step, ev.Err, ev.Who, prefix(" ", ev.Note))
		}
	}
	return check(ctx, cfg, db, r, products, prices, stock, ids)
}

func prefix(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// check compares both services and the local table with each saga's
// outcome.
func check(ctx context.Context, cfg Config, db *stm.DB, r *saga.Runner, products *table.Table[string, Product],
	prices *priceService, stock *stockService, ids []string) error {
	counts := map[saga.Phase]int{}
	for i, id := range ids {
		sku := fmt.Sprintf("sku-%03d", i)
		in, err := r.Inspect(ctx, id)
		if err != nil {
			return err
		}
		counts[in.Phase]++
		type got struct {
			p     Product
			found bool
		}
		g, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (got, error) {
			p, ok := products.Get(tx, sku)
			return got{p, ok}, nil
		})
		if err != nil {
			return err
		}
		p, found := g.p, g.found
		switch in.Phase {
		case saga.Done:
			want := cfg.InitialPrice + 10 + i
			if prices.price(sku) != want || stock.units(sku) != cfg.InitialStock-2 || !found || p.Price != want {
				return fmt.Errorf("%s done, but price %d, stock %d, product %+v (found %v)", id, prices.price(sku), stock.units(sku), p, found)
			}
		case saga.Compensated:
			if prices.price(sku) != cfg.InitialPrice || stock.units(sku) != stockBefore(cfg, i) || found {
				return fmt.Errorf("%s compensated, but price %d, stock %d, product found %v", id, prices.price(sku), stock.units(sku), found)
			}
		default:
			return fmt.Errorf("%s is %s: %s", id, in.Phase, in.Reason)
		}
	}
	fmt.Fprintf(cfg.Out, "checked: %d done and %d compensated sagas agree with the price service, the stock service and the local table\n",
		counts[saga.Done], counts[saga.Compensated])
	return nil
}

func stockBefore(cfg Config, i int) int {
	if cfg.OutOfStockEvery > 0 && i%cfg.OutOfStockEvery == cfg.OutOfStockEvery-1 {
		return 0
	}
	return cfg.InitialStock
}

// defineFlow is the saga: price (remote, with a query), stock (remote),
// product (local).
func defineFlow(priceURL, stockURL string, products *table.Table[string, Product]) (*saga.Flow[Update], error) {
	hc := &http.Client{}
	post := func(ctx context.Context, c saga.Call, u string, out any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Idempotency-Key", c.OpID) // the remote side dedupes by it
		return do(hc, req, out)
	}
	forward := func(c saga.Call) string { return c.OpID[:len(c.OpID)-len("undo")] + "do" }
	return saga.Define("product-update", 1,
		saga.Step[Update]{
			Name: "price",
			Call: func(ctx context.Context, c saga.Call, u *Update) error {
				var out struct{ Old int }
				if err := post(ctx, c, fmt.Sprintf("%s/prices/%s?price=%d", priceURL, u.SKU, u.NewPrice), &out); err != nil {
					return err
				}
				u.OldPrice = out.Old // the operation log the undo uses
				return nil
			},
			CallUndo: func(ctx context.Context, c saga.Call, u *Update) error {
				return post(ctx, c, fmt.Sprintf("%s/prices/%s/restore?price=%d&forward=%s", priceURL, u.SKU, u.OldPrice, url.QueryEscape(forward(c))), nil)
			},
			Query: func(ctx context.Context, c saga.Call, u *Update) (bool, error) {
				if c.Undo {
					return false, nil // restoring again is harmless
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, priceURL+"/ops?op="+url.QueryEscape(c.OpID), nil)
				if err != nil {
					return false, err
				}
				var out struct {
					Landed bool
					Old    int
				}
				if err := do(hc, req, &out); err != nil {
					return false, err
				}
				u.OldPrice = out.Old
				return out.Landed, nil
			},
		},
		saga.Step[Update]{
			Name: "stock",
			Call: func(ctx context.Context, c saga.Call, u *Update) error {
				return post(ctx, c, fmt.Sprintf("%s/stock/%s/take?n=%d", stockURL, u.SKU, u.Take), nil)
			},
			CallUndo: func(ctx context.Context, c saga.Call, u *Update) error {
				return post(ctx, c, fmt.Sprintf("%s/stock/%s/return?forward=%s", stockURL, u.SKU, url.QueryEscape(forward(c))), nil)
			},
		},
		saga.Local("product", func(tx *stm.Tx, u *Update) error {
			products.Update(tx, u.SKU, func(p Product, _ bool) (Product, bool) {
				return Product{Price: u.NewPrice, Taken: p.Taken + u.Take}, true
			})
			return nil
		}, nil),
	)
}

// do sends req: 409 and other 4xx are permanent, 5xx retryable, a lost
// answer ambiguous.
func do(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return saga.Ambiguous(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
	case resp.StatusCode >= 400:
		return mover.Permanent(fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// serveAdmin serves the admin page, with the stuck sagas, and the
// Prometheus metrics of this run on cfg.AdminAddr, and prints their URLs.
func serveAdmin(cfg Config, db *stm.DB, q *effectqueue.Queue, m *mover.Mover, r *saga.Runner) (stop func(), err error) {
	col, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Queues: map[string]*effectqueue.Queue{"main": q},
		Movers: map[string]metrics.Mover{"main": m},
		Sagas:  metrics.SagaRunners(r),
	})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(col); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", admin.Handler(&admin.Options{
		RootPath: "/admin",
		DB:       db,
		Queues:   map[string]*effectqueue.Queue{"main": q},
		Movers:   map[string]*mover.Mover{"main": m},
		Sections: []admin.Section{admin.SagaSection(r)},
	}))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(cfg.Out, "admin page %s/admin/ (zest --url %s/admin sagas stuck), metrics %s/metrics\n", base, base, base)
	return func() { _ = srv.Close() }, nil
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
