package idem_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
)

// Refund is the state of the example's saga. It carries the token key of
// the request that started it, for the end hook.
type Refund struct {
	Key    idem.Key
	Amount int
}

// Example_saga ties a token to a saga: the request that starts the saga
// links the token to it, retries get ErrInProgress while it runs, and the
// saga's end hook stores its outcome as the token's result.
func Example_saga() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, _ := os.MkdirTemp("", "idem-saga-example")
	defer os.RemoveAll(dir)
	db, _ := stm.Open(&stm.Options{Logger: quiet})
	q, _ := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	defer q.Close()
	tokens, _ := idem.New(db, "refund-tokens", &idem.Options{Logger: quiet})
	runner, _ := saga.New(db, q, &saga.Options{Logger: quiet})

	bankAnswers := make(chan struct{})
	refund, _ := saga.Define("refund", 1, saga.Remote("bank",
		func(ctx context.Context, c saga.Call, s *Refund) error {
			<-bankAnswers // the bank takes its time
			return nil
		}, nil))
	_ = refund.Register(runner, &saga.FlowOptions[Refund]{
		// Runs in the transaction that ends the saga: the token's result
		// commits with the end.
		OnEnd: func(tx *stm.Tx, id string, outcome saga.Outcome, s *Refund) error {
			err := tokens.Settle(tx, s.Key, id, []byte(fmt.Sprintf("refund of %d: %s", s.Amount, outcome)))
			if errors.Is(err, idem.ErrNotLinked) {
				return nil // an operator forgot the token
			}
			return err
		},
	})
	m, _ := mover.New(q, map[string]mover.Sink{saga.Kind: runner.Sink()}, &mover.Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Run(ctx) })
	wg.Go(func() { _ = runner.Run(ctx) })
	defer wg.Wait()
	defer cancel()

	// A request handler: begin the token; the first time, start the saga
	// and link the token to it, in the same transaction.
	request := func(order string, amount int) (string, error) {
		key := idem.Key{Scope: "alice", ID: order, Scene: "refund"}
		return stm.RunValue(ctx, db, func(tx *stm.Tx) (string, error) {
			prev, replay, err := tokens.Begin(tx, key, idem.Fingerprint([]byte(fmt.Sprint(amount))))
			if err != nil || replay {
				return string(prev), err
			}
			id := "refund-" + order
			if err := refund.Start(tx, id, Refund{Key: key, Amount: amount}); err != nil {
				return "", err
			}
			return "accepted", tokens.Link(tx, key, id)
		})
	}
	fmt.Println(request("order-42", 30))
	_, err := request("order-42", 30)
	fmt.Println(errors.Is(err, idem.ErrInProgress))
	close(bankAnswers)
	info, _ := runner.Wait(ctx, "refund-order-42")
	fmt.Println(info.Phase)
	fmt.Println(request("order-42", 30))
	_ = m.Shutdown(ctx)
	// Output:
	// accepted <nil>
	// true
	// done
	// refund of 30: done <nil>
}
