package idem_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openMem returns an in-memory DB and its tokens.
func openMem(t testing.TB, opts *idem.Options) (*stm.DB, *idem.Tokens) {
	t.Helper()
	db, err := stm.Open(nil)
	require.NoError(t, err)
	tokens, err := idem.New(db, "tokens", opts)
	require.NoError(t, err)
	return db, tokens
}

// openDurable opens a DB with its queue in dir, and durable tokens.
func openDurable(t testing.TB, dir string, opts *idem.Options) (*stm.DB, *effectqueue.Queue, *idem.Tokens) {
	t.Helper()
	db, err := stm.Open(nil)
	require.NoError(t, err)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	require.NoError(t, err)
	tokens, err := idem.New(db, "tokens", opts)
	require.NoError(t, err)
	require.True(t, tokens.Durable())
	return db, q, tokens
}

type beginResult struct {
	result []byte
	replay bool
}

// begin runs Begin alone in a transaction that commits.
func begin(t testing.TB, db *stm.DB, tokens *idem.Tokens, key idem.Key, fp []byte) (beginResult, error) {
	t.Helper()
	return stm.RunValue(context.Background(), db, func(tx *stm.Tx) (beginResult, error) {
		r, replay, err := tokens.Begin(tx, key, fp)
		return beginResult{r, replay}, err
	})
}

func run(t testing.TB, db *stm.DB, fn func(tx *stm.Tx) error) error {
	t.Helper()
	return db.Run(context.Background(), fn)
}
