package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/zest-stm/zest/effectqueue"
)

// deadLetterPage is how many dead letters one read returns while counting.
const deadLetterPage = 256

// deadCounter counts one queue's dead letters, and keeps the last count for
// Options.DeadLetterRefresh.
type deadCounter struct {
	q     *effectqueue.Queue
	limit int

	// mu serializes counts of this queue, so that concurrent scrapes with a
	// refresh interval share one count instead of each reading the dead
	// letters. It guards the cached count.
	mu        sync.Mutex
	at        time.Time // when n was counted; zero if never
	n         int
	truncated bool
}

// count returns the number of dead letters (at most limit) and whether
// there are more, counting again if the last count is older than refresh.
func (d *deadCounter) count(ctx context.Context, refresh time.Duration) (n int, truncated bool, err error) {
	if refresh <= 0 {
		return countDeadLetters(ctx, d.q, d.limit)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.at.IsZero() && time.Since(d.at) < refresh {
		return d.n, d.truncated, nil
	}
	n, truncated, err = countDeadLetters(ctx, d.q, d.limit)
	if err != nil {
		return 0, false, err // not cached: the next scrape tries again
	}
	d.at, d.n, d.truncated = time.Now(), n, truncated
	return n, truncated, nil
}

// countDeadLetters counts q's dead letters, up to limit. The queue has no
// count, so this reads them, a page at a time: O(dead letters × their size)
// per call, bounded by limit.
func countDeadLetters(ctx context.Context, q *effectqueue.Queue, limit int) (n int, truncated bool, err error) {
	var after uint64
	for n < limit {
		want := min(deadLetterPage, limit-n)
		page, err := q.DeadLetters(ctx, after, want)
		if err != nil {
			return n, false, err
		}
		n += len(page)
		if len(page) < want {
			return n, false, nil
		}
		after = page[len(page)-1].Seq
	}
	// n == limit: one more read says whether there are more.
	more, err := q.DeadLetters(ctx, after, 1)
	if err != nil {
		return n, false, err
	}
	return n, len(more) > 0, nil
}
