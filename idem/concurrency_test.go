package idem_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// TestConcurrentDuplicates runs many goroutines that pay the same orders at
// the same moment, each request with its own receipt. Invariants checked:
//
//  1. exactly one execution per key: the paid total of each order is the
//     amount of one payment, and exactly one request per key saw
//     replay == false;
//  2. every other request replayed, and got the winner's receipt;
//  3. the counters agree: Begun == keys, Replays == requests - keys.
//
// Every first attempt waits, after Begin, until all the requests for its key
// are inside their bodies, so the duplicates really overlap: each key's
// requests but one must rerun (checked in the DB's statistics).
//
// Run against an in-memory and a durable DB.
func TestConcurrentDuplicates(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			var db *stm.DB
			var tokens *idem.Tokens
			if durable {
				var q interface{ Close() error }
				db, q, tokens = openDurableQ(t)
				defer q.Close()
			} else {
				db, tokens = openMem(t, nil)
			}
			paid, err := table.New[string, int](db, "paid")
			require.NoError(t, err)
			const keys, dups = 8, 32
			type answer struct {
				receipt string
				replay  bool
				err     error
			}
			answers := make([][dups]answer, keys)
			barriers := make([]*barrier, keys)
			for k := range barriers {
				barriers[k] = newBarrier(dups)
			}
			rerunsBefore := db.Stats().Reruns
			start := make(chan struct{})
			var wg sync.WaitGroup
			for k := range keys {
				for d := range dups {
					wg.Go(func() {
						<-start
						key := idem.Key{Scope: "u", ID: fmt.Sprint("order-", k), Scene: "pay"}
						mine := fmt.Sprintf("receipt of request %d", d)
						type out struct {
							receipt string
							replay  bool
						}
						o, err := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (out, error) {
							prev, replay, err := tokens.Begin(tx, key, idem.Fingerprint([]byte("7")))
							if err != nil || replay {
								return out{string(prev), replay}, err
							}
							if tx.Attempt() == 1 {
								barriers[k].wait()
							}
							n, _ := paid.Get(tx, key.ID)
							paid.Put(tx, key.ID, n+7)
							return out{mine, false}, tokens.Finish(tx, key, []byte(mine))
						})
						answers[k][d] = answer{o.receipt, o.replay, err}
					})
				}
			}
			close(start)
			wg.Wait()

			for k := range keys {
				winners := 0
				var winner string
				for _, a := range answers[k] {
					require.NoError(t, a.err)
					if !a.replay {
						winners++
						winner = a.receipt
					}
				}
				require.Equal(t, 1, winners, "order-%d: one execution", k)
				for d, a := range answers[k] {
					assert.Equal(t, winner, a.receipt, "order-%d request %d replays the winner's receipt", k, d)
				}
				total, _ := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (int, error) {
					v, _ := paid.Get(tx, fmt.Sprint("order-", k))
					return v, nil
				})
				assert.Equal(t, 7, total, "order-%d paid once", k)
			}
			st := tokens.Stats()
			assert.Equal(t, uint64(keys), st.Begun)
			assert.Equal(t, uint64(keys*(dups-1)), st.Replays)
			for k, b := range barriers {
				assert.Equal(t, dups, b.arrived(), "order-%d: every request was inside its body at once", k)
			}
			assert.GreaterOrEqual(t, db.Stats().Reruns-rerunsBefore, uint64(keys*(dups-1)), "the duplicates conflicted and reran")
		})
	}
}

// barrier releases its waiters once n have arrived, or after 10 s (a
// failing test must not hang).
type barrier struct {
	mu   sync.Mutex
	n, k int
	open chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, open: make(chan struct{})} }

func (b *barrier) wait() {
	b.mu.Lock()
	b.k++
	if b.k == b.n {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-time.After(10 * time.Second):
	}
}

func (b *barrier) arrived() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.k
}

func openDurableQ(t *testing.T) (*stm.DB, interface{ Close() error }, *idem.Tokens) {
	db, q, tokens := openDurable(t, t.TempDir(), nil)
	return db, q, tokens
}

// TestConcurrentOnce: many goroutines call Once for the same key; exactly
// one succeeds, the others get ErrDuplicate.
func TestConcurrentOnce(t *testing.T) {
	db, tokens := openMem(t, nil)
	const n = 64
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = db.Run(context.Background(), func(tx *stm.Tx) error { return tokens.Once(tx, idem.Key{ID: "order-1"}) })
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, idem.ErrDuplicate)
		}
	}
	assert.Equal(t, 1, ok)
	assert.Equal(t, uint64(n-1), tokens.Stats().Duplicates)
}
