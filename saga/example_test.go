package saga_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Order is the state of the example flow.
type Order struct {
	SKU      string
	Qty      int
	PriceRef string
}

// ExampleFlow_Start runs the issue's flow: set a price (remote), take stock
// (remote), update the local product (local). The stock service refuses, so
// the price change is undone, and the saga ends compensated. The "services"
// are in-process maps here; see examples/order-saga for real HTTP ones.
func ExampleFlow_Start() {
	dir, _ := os.MkdirTemp("", "saga-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, _ := stm.Open(&stm.Options{Logger: quiet})
	q, _ := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	defer q.Close()
	products, _ := table.NewDurable[string, int](db, "products", nil)
	r, _ := saga.New(db, q, &saga.Options{Logger: quiet})

	var mu sync.Mutex
	prices := map[string]string{} // OpID → what the price service did
	flow, err := saga.Define("product-update", 1,
		saga.Remote("price",
			func(ctx context.Context, c saga.Call, o *Order) error {
				mu.Lock()
				defer mu.Unlock()
				prices[c.OpID] = "set"
				o.PriceRef = c.OpID
				return nil
			},
			func(ctx context.Context, c saga.Call, o *Order) error {
				mu.Lock()
				defer mu.Unlock()
				prices[c.OpID] = "restored"
				return nil
			}),
		saga.Remote("stock",
			func(ctx context.Context, c saga.Call, o *Order) error {
				return mover.Permanent(errors.New("out of stock"))
			}, nil),
		saga.Local("product", func(tx *stm.Tx, o *Order) error {
			products.Put(tx, o.SKU, o.Qty)
			return nil
		}, nil),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = flow.Register(r, nil)
	m, _ := mover.New(q, map[string]mover.Sink{saga.Kind: r.Sink()}, &mover.Options{Logger: quiet})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.Run(runCtx)
	go r.Run(runCtx)

	err = db.Run(ctx, func(tx *stm.Tx) error { return flow.Start(tx, "order-42", Order{SKU: "potion", Qty: 3}) })
	fmt.Println("start:", err)
	err = db.Run(ctx, func(tx *stm.Tx) error { return flow.Start(tx, "order-42", Order{}) })
	fmt.Println("again:", errors.Is(err, saga.ErrDuplicate))

	in, _ := r.Wait(ctx, "order-42")
	fmt.Println("phase:", in.Phase)
	fmt.Println("reason:", in.Reason)
	mu.Lock()
	fmt.Println("price service:", prices["product-update/order-42/price/do"], prices["product-update/order-42/price/undo"])
	mu.Unlock()
	// Output:
	// start: <nil>
	// again: true
	// phase: compensated
	// reason: step stock failed permanently: out of stock
	// price service: set restored
}

// ExampleRemember calls a side-effect-free remote (a price lookup) inside a
// body once, even though the body runs twice.
func ExampleRemember() {
	db, _ := stm.Open(&stm.Options{Logger: quiet})
	counter := stm.NewVar[int](nil, 0)
	var memo saga.Memo
	lookups := 0
	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		price, err := saga.Remember(&memo, "price:potion", func() (int, error) { lookups++; return 90, nil })
		if err != nil {
			return err
		}
		n, _ := counter.Load(tx)
		if tx.Attempt() == 1 { // another commit changes counter: this attempt reruns
			done := make(chan struct{})
			go func() {
				_ = db.Run(context.Background(), func(tx *stm.Tx) error { counter.Store(tx, 1); return nil })
				close(done)
			}()
			<-done
		}
		counter.Store(tx, n+price)
		return nil
	})
	fmt.Println("lookups:", lookups)
	// Output:
	// lookups: 1
}
