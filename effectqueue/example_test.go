package effectqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

func ExampleQueue_Enqueue() {
	dir, _ := os.MkdirTemp("", "zest-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, _ := stm.Open(nil)
	q, _ := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	defer q.Close()

	// Committed: the entry is durable when Run returns.
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		return q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: "receipts/1", Payload: []byte("sword")})
	})
	// Rolled back: nothing is left behind.
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		_ = q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: "receipts/2", Payload: []byte("shield")})
		return errors.New("item missing")
	})

	items, _ := q.Read(ctx, 0, 10)
	for _, it := range items {
		fmt.Println(it.Seq, it.Key, string(it.Payload))
	}
	_ = q.Ack(ctx, items[0].Seq)
	fmt.Println("pending:", q.Depth())
	// Output:
	// 1 receipts/1 sword
	// pending: 0
}
