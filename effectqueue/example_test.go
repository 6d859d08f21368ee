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

// A consumer loop: read what is pending after a position, deliver it, ack
// it, and wait for the next commit. Wait returns only when there is
// something to read, so the loop does not spin.
func ExampleQueue_Wait() {
	dir, _ := os.MkdirTemp("", "zest-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, _ := stm.Open(nil)
	q, _ := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	defer q.Close()

	go func() {
		for _, p := range []string{"a", "b", "c"} {
			_ = db.Run(ctx, func(tx *stm.Tx) error {
				return q.Enqueue(tx, effectqueue.Entry{Kind: "log", Payload: []byte(p)})
			})
		}
	}()
	var pos uint64
	for delivered := 0; delivered < 3; {
		if err := q.Wait(ctx, pos); err != nil {
			fmt.Println(err)
			return
		}
		items, _ := q.Read(ctx, pos, 10)
		for _, it := range items {
			fmt.Println("deliver", string(it.Payload))
			_ = q.Ack(ctx, it.Seq)
			pos = it.Seq
			delivered++
		}
	}
	st := q.Stats()
	fmt.Println("entries:", st.Entries, "pending:", st.Depth)
	// Output:
	// deliver a
	// deliver b
	// deliver c
	// entries: 3 pending: 0
}
