package idem_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

func ExampleTokens_Begin() {
	ctx := context.Background()
	db, _ := stm.Open(nil)
	tokens, _ := idem.New(db, "pay-tokens", nil)
	balances, _ := table.New[string, int](db, "balances")

	pay := func(user, order string, amount int) (string, error) {
		key := idem.Key{Scope: user, ID: order, Scene: "pay"}
		fp := idem.Fingerprint([]byte(fmt.Sprint(amount)))
		return stm.RunValue(ctx, db, func(tx *stm.Tx) (string, error) {
			prev, replay, err := tokens.Begin(tx, key, fp)
			if err != nil || replay {
				return string(prev), err
			}
			b, _ := balances.Get(tx, user)
			balances.Put(tx, user, b-amount)
			receipt := fmt.Sprintf("%s paid %d for %s", user, amount, order)
			return receipt, tokens.Finish(tx, key, []byte(receipt))
		})
	}
	fmt.Println(pay("alice", "order-1", 30))
	fmt.Println(pay("alice", "order-1", 30)) // a retry: replayed, not charged
	_, err := pay("alice", "order-1", 99)    // same order, other amount
	fmt.Println(errors.Is(err, idem.ErrMismatch))
	stm.RunValue(ctx, db, func(tx *stm.Tx) (int, error) {
		b, _ := balances.Get(tx, "alice")
		fmt.Println("balance", b)
		return b, nil
	})
	// Output:
	// alice paid 30 for order-1 <nil>
	// alice paid 30 for order-1 <nil>
	// true
	// balance -30
}

func ExampleTokens_Once() {
	ctx := context.Background()
	db, _ := stm.Open(nil)
	tokens, _ := idem.New(db, "order-tokens", nil)
	payOnce := func(order string) error {
		return db.Run(ctx, func(tx *stm.Tx) error {
			if err := tokens.Once(tx, idem.Key{ID: order, Scene: "pay"}); err != nil {
				return err
			}
			// ... charge the order
			return nil
		})
	}
	fmt.Println(payOnce("order-7"))
	fmt.Println(payOnce("order-7"))
	// Output:
	// <nil>
	// idem: operation already done: key /order-7/pay
}

func ExampleTokens_Link() {
	ctx := context.Background()
	db, _ := stm.Open(nil)
	tokens, _ := idem.New(db, "transfer-tokens", nil)
	key := idem.Key{Scope: "alice", ID: "transfer-9", Scene: "transfer"}

	// The request that starts a long operation (a saga) links the token.
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		if _, _, err := tokens.Begin(tx, key, nil); err != nil {
			return err
		}
		// ... start saga "saga-9" in this transaction
		return tokens.Link(tx, key, "saga-9")
	})
	_, _, err := beginOnce(ctx, db, tokens, key)
	fmt.Println(err)

	// The transaction that ends the saga (its end hook) settles the token.
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		return tokens.Settle(tx, key, "saga-9", []byte("transferred"))
	})
	result, replay, err := beginOnce(ctx, db, tokens, key)
	fmt.Println(string(result), replay, err)
	// Output:
	// idem: operation still in progress: key alice/transfer-9/transfer is linked to "saga-9"
	// transferred true <nil>
}

func beginOnce(ctx context.Context, db *stm.DB, tokens *idem.Tokens, key idem.Key) ([]byte, bool, error) {
	var result []byte
	var replay bool
	err := db.Run(ctx, func(tx *stm.Tx) error {
		var err error
		result, replay, err = tokens.Begin(tx, key, nil)
		return err
	})
	return result, replay, err
}

func ExampleMiddleware() {
	db, _ := stm.Open(nil)
	tokens, _ := idem.New(db, "http-tokens", nil)
	orders, _ := table.New[string, int](db, "orders")
	mw, _ := idem.Middleware(tokens, nil)

	// The handler writes with the request's transaction; it may run more
	// than once, and its response is sent after the commit.
	pay := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := idem.TxFrom(r.Context())
		n, _ := orders.Get(tx, r.PathValue("id"))
		orders.Put(tx, r.PathValue("id"), n+1)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %s paid", r.PathValue("id"))
	})
	mux := http.NewServeMux()
	mux.Handle("POST /orders/{id}/pay", mw(pay))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	post := func(key, body string) {
		req, _ := http.NewRequest("POST", srv.URL+"/orders/42/pay", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer res.Body.Close()
		if res.StatusCode >= 400 {
			fmt.Println(res.StatusCode) // a problem+json body says why
			return
		}
		b, _ := io.ReadAll(res.Body)
		fmt.Println(res.StatusCode, res.Header.Get(idem.ReplayedHeader), string(b))
	}
	post("k-1", "10 EUR")
	post("k-1", "10 EUR") // retry: replayed
	post("k-1", "12 EUR") // same key, other body
	post("", "10 EUR")    // no key
	// Output:
	// 201  order 42 paid
	// 201 true order 42 paid
	// 422
	// 400
}

func ExampleTokens_Lookup() {
	ctx := context.Background()
	db, _ := stm.Open(nil)
	clock := func() time.Time { return time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC) }
	tokens, _ := idem.New(db, "tokens", &idem.Options{Now: clock})
	key := idem.Key{Scope: "alice", ID: "order-1", Scene: "pay"}
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		if _, _, err := tokens.Begin(tx, key, nil); err != nil {
			return err
		}
		return tokens.Finish(tx, key, []byte("receipt"))
	})

	// What an operator sees, and forgetting the token.
	info, _ := tokens.Lookup(ctx, key)
	b, _ := json.Marshal(info)
	fmt.Println(string(b))
	found, _ := tokens.Discard(ctx, key)
	_, err := tokens.Lookup(ctx, key)
	fmt.Println(found, errors.Is(err, idem.ErrNotFound))
	// Output:
	// {"key":{"scope":"alice","id":"order-1","scene":"pay"},"state":"done","created":"2026-12-01T20:00:00Z","expires":"2026-12-02T20:00:00Z","result_size":7}
	// true true
}
