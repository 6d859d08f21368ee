// Command order-payment is an order payment endpoint made idempotent with
// package idem.
//
// POST /orders/{id}/pay (header Idempotency-Key, header X-User standing in
// for authentication, body {"amount": 30}) debits the user's balance and
// marks the order paid, in one transaction with the idempotency token and
// the stored response. A retry with the same key gets the stored response
// (Idempotent-Replayed: true); the same key with another body gets 422; a
// second payment of an already paid order, under a new key, gets 409 from
// Tokens.Once. Tables and tokens are durable: a restarted server still
// replays.
//
// Without -serve the program plays a client against its own server: many
// concurrent duplicates, a retry with another amount, a second payment of
// the same order, and checks that each order was charged once.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

var errInsufficient = errors.New("insufficient funds")

// Order is a paid order.
type Order struct {
	User   string `json:"user"`
	Amount int64  `json:"amount"`
}

// Receipt is the response to a payment.
type Receipt struct {
	Order   string `json:"order"`
	User    string `json:"user"`
	Amount  int64  `json:"amount"`
	Balance int64  `json:"balance_after"`
}

// Shop is the service: durable tables and tokens on one DB.
type Shop struct {
	db       *stm.DB
	q        *effectqueue.Queue
	accounts *table.Table[string, int64]
	orders   *table.Table[string, Order]
	tokens   *idem.Tokens
}

// Open opens the shop's durable state in dir; new users start with
// initial.
func Open(dir string, initial map[string]int64, logger *slog.Logger) (*Shop, error) {
	db, err := stm.Open(&stm.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	s := &Shop{db: db}
	// The queue is the DB's durable log: open it before the tables, so
	// that they and the tokens are durable.
	if s.q, err = effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: logger}); err != nil {
		return nil, err
	}
	if s.accounts, err = table.NewDurable[string, int64](db, "accounts", nil); err != nil {
		return nil, errors.Join(err, s.q.Close())
	}
	if s.orders, err = table.NewDurable[string, Order](db, "orders", nil); err != nil {
		return nil, errors.Join(err, s.q.Close())
	}
	if s.tokens, err = idem.New(db, "payment-tokens", &idem.Options{Logger: logger}); err != nil {
		return nil, errors.Join(err, s.q.Close())
	}
	err = db.Run(context.Background(), func(tx *stm.Tx) error {
		for u, b := range initial {
			if !s.accounts.Has(tx, u) {
				s.accounts.Put(tx, u, b)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, s.q.Close())
	}
	return s, nil
}

// Close closes the shop's queue (and so its durable log).
func (s *Shop) Close() error { return s.q.Close() }

// Handler returns the HTTP API.
func (s *Shop) Handler() (http.Handler, error) {
	mw, err := idem.Middleware(s.tokens, &idem.MiddlewareOptions{
		// Keys are per user: one user's key never meets another's.
		Scope: func(r *http.Request) string { return r.Header.Get("X-User") },
		Scene: "pay",
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /orders/{id}/pay", mw(http.HandlerFunc(s.pay)))
	mux.HandleFunc("GET /accounts/{user}", s.balance)
	return mux, nil
}

// pay runs inside the middleware's transaction: it may run several times
// for one request, so it only writes through tx and to w.
func (s *Shop) pay(w http.ResponseWriter, r *http.Request) {
	tx, _ := idem.TxFrom(r.Context())
	user, order := r.Header.Get("X-User"), r.PathValue("id")
	var body struct {
		Amount int64 `json:"amount"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Amount <= 0 || user == "" {
		http.Error(w, "want X-User and a positive amount", http.StatusBadRequest)
		return
	}
	// The business rule, whatever the client's key: an order is paid once.
	// The savepoint rolls the Once claim back with the rest if the payment
	// is refused (a 4xx response is committed and stored like any answer).
	var balance int64
	err := tx.Savepoint(func(tx *stm.Tx) error {
		if err := s.tokens.Once(tx, idem.Key{ID: order, Scene: "order-paid"}); err != nil {
			return err
		}
		balance, _ = s.accounts.Get(tx, user)
		if balance < body.Amount {
			return errInsufficient
		}
		s.accounts.Put(tx, user, balance-body.Amount)
		s.orders.Put(tx, order, Order{User: user, Amount: body.Amount})
		return nil
	})
	switch {
	case errors.Is(err, idem.ErrDuplicate):
		http.Error(w, "order "+order+" is already paid", http.StatusConflict)
		return
	case errors.Is(err, errInsufficient):
		http.Error(w, "insufficient funds", http.StatusPaymentRequired)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(Receipt{Order: order, User: user, Amount: body.Amount, Balance: balance - body.Amount})
}

func (s *Shop) balance(w http.ResponseWriter, r *http.Request) {
	b, err := stm.RunValue(r.Context(), s.db, func(tx *stm.Tx) (int64, error) {
		b, _ := s.accounts.Get(tx, r.PathValue("user"))
		return b, nil
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int64{"balance": b})
}

// Report is what a demo run saw.
type Report struct {
	Requests  int            // requests sent
	Statuses  map[int]int    // responses by status
	Replayed  int            // responses with Idempotent-Replayed: true
	Charged   int64          // money taken from alice
	Tokens    idem.Stats     // the token counters
	Receipts  map[string]int // distinct receipts per order
	Elapsed   time.Duration
	Restarted bool
}

// Demo plays a client against a shop in dir served on 127.0.0.1, and
// checks that every order was charged once.
func Demo(ctx context.Context, dir string, dups int, logger *slog.Logger) (Report, error) {
	start := time.Now()
	shop, err := Open(dir, map[string]int64{"alice": 1000}, logger)
	if err != nil {
		return Report{}, err
	}
	defer shop.Close()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { _ = shop.tokens.Sweep(sweepCtx); close(swept) }()
	defer func() { stopSweep(); <-swept }()
	h, err := shop.Handler()
	if err != nil {
		return Report{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Report{}, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	before, err := balanceOf(base, "alice")
	if err != nil {
		return Report{}, err
	}

	rep := Report{Statuses: map[int]int{}, Receipts: map[string]int{}}
	var mu sync.Mutex
	send := func(key, order, body string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/orders/"+order+"/pay", bytes.NewBufferString(body))
		req.Header.Set("Idempotency-Key", key)
		req.Header.Set("X-User", "alice")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		mu.Lock()
		defer mu.Unlock()
		rep.Requests++
		rep.Statuses[res.StatusCode]++
		if res.Header.Get(idem.ReplayedHeader) == "true" {
			rep.Replayed++
		}
		if res.StatusCode == http.StatusCreated {
			rep.Receipts[order+" "+string(bytes.TrimSpace(b))]++
		}
		return res.StatusCode, nil
	}

	// 1. A client retries order-1 many times at once (a flaky network).
	var wg sync.WaitGroup
	errs := make(chan error, dups)
	for range dups {
		wg.Go(func() {
			if _, err := send("key-order-1", "order-1", `{"amount":30}`); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return rep, err
	}
	// 2. The same key with another amount: 422.
	if code, err := send("key-order-1", "order-1", `{"amount":31}`); err != nil || code != http.StatusUnprocessableEntity {
		return rep, fmt.Errorf("same key, other amount: status %d, %v; want 422", code, err)
	}
	// 3. A second payment of order-1 under a new key: 409 (Once).
	if code, err := send("key-order-1-again", "order-1", `{"amount":30}`); err != nil || code != http.StatusConflict {
		return rep, fmt.Errorf("second payment of a paid order: status %d, %v; want 409", code, err)
	}
	// 4. Another order, paid once.
	if code, err := send("key-order-2", "order-2", `{"amount":12}`); err != nil || (code != http.StatusCreated) {
		return rep, fmt.Errorf("order-2: status %d, %v", code, err)
	}
	after, err := balanceOf(base, "alice")
	if err != nil {
		return rep, err
	}
	rep.Charged = before - after
	rep.Restarted = before != 1000
	rep.Tokens = shop.tokens.Stats()
	rep.Elapsed = time.Since(start)
	switch {
	case rep.Restarted && rep.Charged != 0:
		return rep, fmt.Errorf("after a restart, retries charged %d again", rep.Charged)
	case !rep.Restarted && rep.Charged != 42:
		return rep, fmt.Errorf("charged %d, want 30 + 12", rep.Charged)
	case len(rep.Receipts) != 2:
		return rep, fmt.Errorf("%d distinct receipts, want one per order: %v", len(rep.Receipts), rep.Receipts)
	}
	return rep, nil
}

func balanceOf(base, user string) (int64, error) {
	res, err := http.Get(base + "/accounts/" + user)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var b map[string]int64
	err = json.NewDecoder(res.Body).Decode(&b)
	return b["balance"], err
}

func main() {
	dir := flag.String("dir", "", "data directory (default: a new temporary directory)")
	serve := flag.String("serve", "", "serve the API on this address (e.g. 127.0.0.1:8080) instead of running the demo")
	dups := flag.Int("dups", 50, "concurrent duplicate requests in the demo")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *dir == "" {
		d, err := os.MkdirTemp("", "order-payment-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	ctx := context.Background()
	if *serve != "" {
		shop, err := Open(*dir, map[string]int64{"alice": 1000, "bob": 1000}, slog.Default())
		if err == nil {
			var h http.Handler
			if h, err = shop.Handler(); err == nil {
				go func() { _ = shop.tokens.Sweep(ctx) }()
				fmt.Println("serving on", *serve, "data in", *dir)
				err = (&http.Server{Addr: *serve, Handler: h, ReadHeaderTimeout: 5 * time.Second}).ListenAndServe()
			}
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rep, err := Demo(ctx, *dir, *dups, logger)
	fmt.Printf("%d requests: statuses %v, %d replayed; alice charged %d; receipts %v\n",
		rep.Requests, rep.Statuses, rep.Replayed, rep.Charged, rep.Receipts)
	fmt.Printf("tokens: %+v; %v\n", rep.Tokens, rep.Elapsed.Round(time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("ok: every order charged once")
}
