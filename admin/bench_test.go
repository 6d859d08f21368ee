package admin_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// BenchmarkOverview measures one GET /api/overview (what the page asks for
// every refresh) on a queue with dead letters of 1 KiB and pending entries:
// the summary takes the dead-letter count from the queue (no read), and the
// lanes from the first 2,000 pending entries. "empty" is the anchor.
func BenchmarkOverview(b *testing.B) {
	for _, c := range []struct{ dead, pending int }{{0, 0}, {100, 100}, {2000, 2000}} {
		name := fmt.Sprintf("dead=%d/pending=%d", c.dead, c.pending)
		if c.dead == 0 {
			name = "empty"
		}
		b.Run(name, func(b *testing.B) {
			quiet := slog.New(slog.DiscardHandler)
			db, _ := stm.Open(nil)
			q, err := effectqueue.Open(db, &effectqueue.Options{Dir: b.TempDir(), Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			payload := make([]byte, 1024)
			ctx := context.Background()
			for i := range c.dead + c.pending {
				err := db.Run(ctx, func(tx *stm.Tx) error {
					return q.Enqueue(tx, effectqueue.Entry{Kind: "t.put", Key: fmt.Sprintf("k%d", i%200), Payload: payload})
				})
				if err != nil {
					b.Fatal(err)
				}
				if i < c.dead {
					if err := q.DeadLetter(ctx, q.Head(), "bench"); err != nil {
						b.Fatal(err)
					}
				}
			}
			h := admin.Handler(&admin.Options{DB: db, Queues: map[string]*effectqueue.Queue{"main": q}, Logger: quiet})
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", "/api/overview", nil))
				if w.Code != 200 {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}
