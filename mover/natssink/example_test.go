package natssink_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/natstest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/natssink"
	"github.com/zest-stm/zest/stm"
)

// Example publishes a purchase to NATS JetStream once its transaction has
// committed (here against a server started in the process; in production
// the URL and stream come from ZEST_NATS_URL and ZEST_NATS_STREAM).
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "zest-example-")
	defer os.RemoveAll(dir)
	srv, err := natstest.New(filepath.Join(dir, "nats"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()

	sink, err := natssink.New(&natssink.Options{URL: srv.URL, Stream: "PURCHASES", CreateStream: true})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	if err := sink.Check(ctx); err != nil {
		log.Fatal(err) // says whether the server, the credentials or the stream is wrong
	}
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: filepath.Join(dir, "queue"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	m, err := mover.New(q, map[string]mover.Sink{"nats": sink}, nil)
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = m.Run(ctx) }()

	err = db.Run(ctx, func(tx *stm.Tx) error {
		// ... debit alice's coins in a table ...
		return q.Enqueue(tx, natssink.Publish("PURCHASES.alice", []byte(`{"item":"sword","price":12}`), nil))
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = m.WaitDrained(ctx)
	_ = m.Shutdown(ctx)

	st, _ := sink.JetStream().Stream(ctx, "PURCHASES")
	msg, _ := st.GetLastMsgForSubject(ctx, "PURCHASES.alice")
	fmt.Println(msg.Subject, string(msg.Data), msg.Header.Get(jetstream.MsgIDHeader) == q.ID()+"-1")
	// Output:
	// PURCHASES.alice {"item":"sword","price":12} true
}
