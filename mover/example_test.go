package mover_test

import (
	"context"
	"log"

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
