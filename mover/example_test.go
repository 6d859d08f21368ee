package mover_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
	"github.com/zest-stm/zest/stm"
)

// ExampleNew wires a queue to an S3 store (endpoint and credentials from
// ZEST_S3_*): a transaction enqueues a put, and the mover ships it once the
// transaction has committed. (Not run as a test: it needs a store; see
// examples/bag-to-oss and `make demo`.)
func ExampleNew() {
	ctx := context.Background()
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: "/var/lib/game/queue"})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	sink, err := s3sink.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := sink.Check(ctx, "receipts"); err != nil {
		log.Fatal(err) // says whether the endpoint or the credentials are wrong
	}
	m, err := mover.New(q, map[string]mover.Sink{"s3": sink}, nil)
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = m.Run(ctx) }()
	defer m.Shutdown(ctx)

	err = db.Run(ctx, func(tx *stm.Tx) error {
		return q.Enqueue(tx, s3sink.Put("receipts", "alice/42.json", []byte(`{"removed":{"potion":1}}`), "application/json", nil))
	})
	if err != nil {
		log.Fatal(err)
	}
}

// printSink prints what it applies.
type printSink struct{}

func (printSink) Apply(_ context.Context, d mover.Delivery) error {
	fmt.Printf("%s %s %s\n", d.Kind, d.Key, d.Payload)
	return nil
}

// ExampleMover_Run ships committed entries to a sink, in commit order per
// key; a transaction that rolls back ships nothing.
func ExampleMover_Run() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "zest-example-")
	defer os.RemoveAll(dir)
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	m, err := mover.New(q, map[string]mover.Sink{"mail": printSink{}}, nil)
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = m.Run(ctx) }()

	for _, text := range []string{"welcome", "your sword shipped"} {
		_ = db.Run(ctx, func(tx *stm.Tx) error {
			return q.Enqueue(tx, effectqueue.Entry{Kind: "mail.send", Key: "alice", Payload: []byte(text)})
		})
	}
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		_ = q.Enqueue(tx, effectqueue.Entry{Kind: "mail.send", Key: "alice", Payload: []byte("never sent")})
		return errors.New("out of stock") // rolls back: the entry is gone
	})
	if err := m.WaitDrained(ctx); err != nil {
		log.Fatal(err)
	}
	_ = m.Shutdown(ctx)
	fmt.Println("delivered", m.Stats().Delivered)
	// Output:
	// mail.send alice welcome
	// mail.send alice your sword shipped
	// delivered 2
}

// ExampleMover_Pause stops deliveries for an operator; Lanes shows what is
// in flight or failing.
func ExampleMover_Pause() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "zest-example-")
	defer os.RemoveAll(dir)
	db, _ := stm.Open(nil)
	q, _ := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	defer q.Close()
	m, _ := mover.New(q, map[string]mover.Sink{"mail": printSink{}}, &mover.Options{StartPaused: true})
	go func() { _ = m.Run(ctx) }()
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		return q.Enqueue(tx, effectqueue.Entry{Kind: "mail.send", Key: "bob", Payload: []byte("hello")})
	})
	fmt.Println("paused:", m.Paused(), "lanes:", len(m.Lanes()))
	m.Resume()
	_ = m.WaitDrained(ctx)
	_ = m.Shutdown(ctx)
	// Output:
	// paused: true lanes: 0
	// mail.send bob hello
}
