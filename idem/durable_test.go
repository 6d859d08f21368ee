package idem_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// TestDurableRestart: tokens of every state survive a restart, answer as
// before, and the rebuilt expiry index removes them when they expire.
func TestDurableRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := newClock()
	opts := &idem.Options{TTL: time.Hour, Now: clk.Now}
	db, q, tokens := openDurable(t, dir, opts)
	fp := idem.Fingerprint([]byte("p"))
	require.NoError(t, run(t, db, func(tx *stm.Tx) error {
		for _, id := range []string{"done", "claimed", "linked"} {
			if _, _, err := tokens.Begin(tx, idem.Key{ID: id}, fp); err != nil {
				return err
			}
		}
		if err := tokens.Finish(tx, idem.Key{ID: "done"}, []byte("result")); err != nil {
			return err
		}
		if err := tokens.Once(tx, idem.Key{ID: "once"}); err != nil {
			return err
		}
		return tokens.Link(tx, idem.Key{ID: "linked"}, "saga-1")
	}))
	// Rolled back and forgotten tokens stay away after the restart.
	require.ErrorIs(t, run(t, db, func(tx *stm.Tx) error {
		_, _, err := tokens.Begin(tx, idem.Key{ID: "rolled back"}, nil)
		require.NoError(t, err)
		return errBusiness
	}), errBusiness)
	require.NoError(t, run(t, db, func(tx *stm.Tx) error { return tokens.Once(tx, idem.Key{ID: "forgotten"}) }))
	found, err := tokens.Discard(ctx, idem.Key{ID: "forgotten"})
	require.NoError(t, err)
	require.True(t, found)
	before := map[string]idem.Info{}
	for _, id := range []string{"done", "claimed", "linked", "once"} {
		in, err := tokens.Lookup(ctx, idem.Key{ID: id})
		require.NoError(t, err)
		before[id] = in
	}
	require.NoError(t, q.Close())

	db, q, tokens = openDurable(t, dir, opts)
	defer q.Close()
	assert.Equal(t, 4, idem.Count(tokens))
	for id, in := range before {
		got, err := tokens.Lookup(ctx, idem.Key{ID: id})
		require.NoError(t, err)
		assert.Equal(t, in, got, id)
	}
	r, err := begin(t, db, tokens, idem.Key{ID: "done"}, fp)
	require.NoError(t, err)
	assert.Equal(t, beginResult{[]byte("result"), true}, r)
	_, err = begin(t, db, tokens, idem.Key{ID: "linked"}, fp)
	require.ErrorIs(t, err, idem.ErrInProgress)
	assert.Equal(t, 3, tokens.Stats().Indexed, "linked tokens are not indexed")

	clk.Advance(time.Hour + time.Second)
	n, err := tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the index was rebuilt from disk")
	require.NoError(t, run(t, db, func(tx *stm.Tx) error { return tokens.Settle(tx, idem.Key{ID: "linked"}, "saga-1", []byte("ok")) }))
	require.NoError(t, q.Close())

	db, q, tokens = openDurable(t, dir, opts)
	defer q.Close()
	r, err = begin(t, db, tokens, idem.Key{ID: "linked"}, fp)
	require.NoError(t, err)
	assert.Equal(t, beginResult{[]byte("ok"), true}, r)
	assert.Equal(t, 1, idem.Count(tokens))
}

const crashChildEnv = "IDEM_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// openPayments opens the crash test's DB: durable tokens and a durable
// table of paid orders.
func openPayments(dir string, opts *idem.Options) (*stm.DB, *effectqueue.Queue, *idem.Tokens, *table.Table[string, int], error) {
	db, err := stm.Open(nil)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tokens, err := idem.New(db, "tokens", opts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	paid, err := table.NewDurable[string, int](db, "paid", nil)
	return db, q, tokens, paid, err
}

// crashChild pays orders from 4 goroutines until it is killed: new orders,
// and again orders paid before (in this run or an earlier one), which must
// replay. It prints "ack <order>" after each acknowledged commit.
func crashChild(dir string) {
	fail := func(format string, args ...any) {
		fmt.Printf("error "+format+"\n", args...)
		os.Exit(1)
	}
	db, _, tokens, paid, err := openPayments(dir, nil)
	if err != nil {
		fail("%v", err)
	}
	var mu sync.Mutex
	var known []string
	_ = db.Run(context.Background(), func(tx *stm.Tx) error {
		known = known[:0]
		paid.Scan(tx, func(k string, _ int) bool { known = append(known, k); return true })
		return nil
	})
	run := fmt.Sprint(os.Getpid())
	var next int
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				mu.Lock()
				var order string
				again := len(known) > 0 && rand.IntN(3) == 0
				if again {
					order = known[rand.IntN(len(known))]
				} else {
					next++
					order = fmt.Sprint(run, "-", next)
				}
				mu.Unlock()
				key := idem.Key{Scope: "shop", ID: order, Scene: "pay"}
				replay, err := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (bool, error) {
					_, replay, err := tokens.Begin(tx, key, idem.Fingerprint([]byte(order)))
					if err != nil || replay {
						return replay, err
					}
					if paid.Has(tx, order) {
						return false, fmt.Errorf("order %s paid but has no token", order)
					}
					paid.Put(tx, order, 1)
					return false, tokens.Finish(tx, key, []byte("receipt "+order))
				})
				if err != nil {
					fail("%v", err)
				}
				if again && !replay {
					fail("order %s paid before ran again", order)
				}
				fmt.Println("ack", order)
				if !again {
					mu.Lock()
					known = append(known, order)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// TestCrashTokensAgreeWithBusiness kills a process paying orders with
// SIGKILL, 8 times (ZEST_STRESS=1: 60), and checks after each restart that:
//   - every paid order has its token with its receipt, and every token its
//     paid order: the token and the business write commit together;
//   - no order was paid twice, and orders paid before a crash replay after
//     it (the child fails otherwise);
//   - every payment acknowledged before the kill is there.
//
// At the end, the expiry index rebuilt from disk expires every token.
func TestCrashTokensAgreeWithBusiness(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: spawns and kills 8 processes")
	}
	rounds := 8
	if os.Getenv("ZEST_STRESS") != "" {
		rounds = 60
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := rand.Uint64()
	t.Logf("seed %d", s)
	r := rand.New(rand.NewPCG(s, 0))
	acked := map[string]bool{}
	for round := range rounds {
		killAfter := 1 + r.IntN(200)
		seen := 0
		crashtest.Run(t, []string{crashChildEnv + "=" + dir}, func(line string) bool {
			order, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				return false
			}
			acked[order] = true
			seen++
			return seen == killAfter
		})
		require.GreaterOrEqual(t, seen, killAfter, "round %d: the child died on its own", round)

		db, q, tokens, paid, err := openPayments(dir, nil)
		require.NoError(t, err)
		orders := map[string]int{}
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			clear(orders)
			paid.Scan(tx, func(k string, v int) bool { orders[k] = v; return true })
			return nil
		}))
		for order, n := range orders {
			require.Equal(t, 1, n, "round %d: order %s", round, order)
			in, err := tokens.Lookup(ctx, idem.Key{Scope: "shop", ID: order, Scene: "pay"})
			require.NoError(t, err, "round %d: order %s paid without token", round, order)
			require.Equal(t, "done", in.State)
			require.Equal(t, len("receipt "+order), in.ResultSize)
		}
		require.Equal(t, len(orders), idem.Count(tokens), "round %d: tokens without a paid order", round)
		for order := range acked {
			require.Contains(t, orders, order, "round %d: acknowledged payment lost", round)
		}
		require.NoError(t, q.Close())
		t.Logf("round %d: %d orders paid, %d acknowledged", round, len(orders), len(acked))
	}

	clk := newClock()
	clk.t = time.Now().Add(25 * time.Hour)
	_, q, tokens, _, err := openPayments(dir, &idem.Options{Now: clk.Now})
	require.NoError(t, err)
	defer q.Close()
	total := idem.Count(tokens)
	n, err := tokens.Expire(ctx)
	require.NoError(t, err)
	assert.Equal(t, total, n)
	assert.Zero(t, idem.Count(tokens))
}
