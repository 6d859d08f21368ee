package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// Mount the admin handler on the application's mux and read a queue's
// summary from its API.
func ExampleHandler() {
	dir, _ := os.MkdirTemp("", "admin-example-")
	defer os.RemoveAll(dir)
	db, _ := stm.Open(nil)
	q, _ := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	defer q.Close()
	db.Run(context.Background(), func(tx *stm.Tx) error {
		return q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: "receipts/1", Payload: []byte("{}")})
	})

	mux := http.NewServeMux()
	mux.Handle("/admin/", admin.Handler(&admin.Options{
		RootPath: "/admin",
		DB:       db,
		Queues:   map[string]*effectqueue.Queue{"main": q},
	}))
	srv := httptest.NewServer(mux) // the application's own listener
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/admin/api/queues/main")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var s admin.QueueSummary
	json.NewDecoder(resp.Body).Decode(&s)
	fmt.Println(s.Name, "head", s.Head, "depth", s.Depth, "dead", s.DeadLetters)
	fmt.Println("lane", s.Lanes[0].Key, "pending", s.Lanes[0].Pending)
	// Output:
	// main head 1 depth 1 dead 0
	// lane receipts/1 pending 1
}
