package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/dgraph-io/badger/v4"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// inspect runs a read command against the queue directory of a stopped
// server: it opens the Badger directory read-only, puts a read-only admin
// handler over the queue, and answers the command through it in process, so
// that the output is the same as online.
func (c *cli) inspect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", "", "the queue's Badger directory (effectqueue.Options.Dir)")
	prefix := fs.String("prefix", "", `the queue's key prefix (effectqueue.Options.Prefix; default "zq/")`)
	what := "zest inspect --dir DIR [--prefix P] queue|dead ls|dead show SEQ|pending ls|pending show SEQ"
	if err := fs.Parse(args); err != nil {
		return usageErr("usage: %s: %v", what, err)
	}
	if *dir == "" || fs.NArg() == 0 {
		return usageErr("usage: %s", what)
	}
	switch fs.Arg(0) {
	case "queue", "queues", "dead", "pending":
	default:
		return usageErr("usage: inspect answers read commands only (%s)", what)
	}
	bo := badger.DefaultOptions(*dir).WithReadOnly(true).WithLogger(nil)
	bdb, err := badger.Open(bo)
	if err != nil {
		return fmt.Errorf("opening %s read-only (is the server still running? inspect is for a stopped server; use --url for a running one): %w", *dir, err)
	}
	defer bdb.Close()
	quiet := slog.New(slog.DiscardHandler)
	db, err := stm.Open(&stm.Options{Logger: quiet})
	if err != nil {
		return err
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Badger: bdb, Prefix: *prefix, Logger: quiet})
	if err != nil {
		return fmt.Errorf("opening the queue in %s: %w", *dir, err)
	}
	defer q.Close()
	name := c.queue
	if name == "" {
		name = "main"
	}
	h, err := admin.NewHandler(&admin.Options{ReadOnly: true, Queues: map[string]*effectqueue.Queue{name: q}, Logger: quiet})
	if err != nil {
		return usageErr("usage: --queue %q: %v", name, err)
	}
	c.queue, c.base = name, "http://inspect"
	c.http = &http.Client{Transport: handlerTransport{h}}
	return c.dispatch(ctx, fs.Arg(0), fs.Args()[1:])
}

// handlerTransport answers requests with a handler, in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	resp := w.Result()
	resp.Request = r
	return resp, nil
}
